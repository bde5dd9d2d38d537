"""The projection step (pure): one parent with its children, folded batch after batch.

The laws below feed `project` the same events in one batch, in several,
shuffled and duplicated, and follow what it emits into the views the way
the pipeline does (newest observation per entity and email): the views
must end the same whatever the batching, and a repeated batch must change
no document but still re-assert what the parent contributes.
"""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from singleview.fold import is_alive
from singleview.model import DELETE, ERASE, MERGE, RESTORE, UPSERT, ChangeEvent, Version
from singleview.projection import Group, project, resolve_owner
from singleview.sources import SECTIONS
from singleview.view import newest

ORDERS, MARKETING = SECTIONS["orders"], SECTIONS["marketing"]
EMAILS = ("a@x.com", "b@x.com", None)

order_events = st.builds(
    lambda op, v, email, status: ChangeEvent("orders", "o1", op, Version(1_000 + v, "binlog.1", v, 0),
                                             {"customer_email": email, "status": status} if op == UPSERT else {},
                                             full_image=op == UPSERT),
    st.sampled_from([UPSERT, UPSERT, UPSERT, DELETE]), st.integers(0, 15), st.sampled_from(EMAILS),
    st.sampled_from(["new", "complete"]))
item_events = st.builds(
    lambda op, v, item, qty: ChangeEvent("order_items", item, op, Version(1_000 + v, "binlog.1", v, 1),
                                         {"item_id": item, "order_id": "o1", "qty_ordered": qty} if op == UPSERT else {},
                                         full_image=op == UPSERT, parent_id="o1"),
    st.sampled_from([UPSERT, UPSERT, DELETE]), st.integers(0, 15), st.sampled_from(["i1", "i2"]),
    st.sampled_from(["1.0000", "2.0000"]))
contact_events = st.builds(
    lambda op, v, email: ChangeEvent("marketing", "h1", op, Version(1_000 + v, v),
                                     {"email": email} if op == UPSERT else {}),
    st.sampled_from([UPSERT, UPSERT, UPSERT, DELETE, RESTORE, ERASE]), st.integers(0, 15), st.sampled_from(EMAILS))
view_events = st.builds(
    lambda v, view: ChangeEvent("pageviews", view, UPSERT, Version(1_000 + v, view),
                                {"url": f"/c/shoes/{view}", "category": "shoes", "viewed_at": str(v)},
                                full_image=True, parent_id="h1"),
    st.integers(0, 15), st.sampled_from(["v1", "v2", "v3"]))


def batches(events, rnd, cuts):
    """The events shuffled, a third of them delivered twice, cut into `cuts` + 1 batches."""
    delivered = events + events[: len(events) // 3]
    rnd.shuffle(delivered)
    points = sorted(rnd.randint(0, len(delivered)) for _ in range(cuts))
    return [delivered[a:b] for a, b in zip([0, *points], [*points, len(delivered)])]


def run(section, events_batches):
    """Project batch after batch; the views, as email -> newest observation of the parent."""
    group, views = Group("o1" if section is ORDERS else "h1"), {}
    owners: dict = {}
    for batch in events_batches:
        parents = [e for e in batch if e.source == section.parent.name]
        children = [e for e in batch if e.source != section.parent.name]
        done = project(section, group, parents, children)
        group = done.group
        emitted = done.contributions
        if section is MARKETING:
            for part in emitted:
                owners[part.owner_id] = newest([*owners.get(part.owner_id, {}).values(), part])
            emitted = [c for owner, parts in owners.items() for c in resolve_owner(owner, parts)]
        for c in emitted:
            views[c.email] = newest([*views.get(c.email, {}).values(), c])
    return group, {email: [c.data for c in seen.values() if c.live] for email, seen in views.items()}


def live_views(views):
    return {email: data for email, data in views.items() if data}


def ends_the_same_whatever_the_batching(section, events, rnd, cuts):
    _, expected = run(section, [events])
    _, got = run(section, batches(events, rnd, cuts))
    assert live_views(got) == live_views(expected)


@settings(max_examples=300)
@given(st.lists(st.one_of(order_events, item_events), max_size=14), st.randoms(), st.integers(0, 4))
def test_orders_end_the_same_whatever_the_batching_order_and_duplication(events, rnd, cuts):
    ends_the_same_whatever_the_batching(ORDERS, events, rnd, cuts)


@settings(max_examples=300)
@given(st.lists(st.one_of(contact_events, view_events), max_size=14), st.randoms(), st.integers(0, 4))
def test_a_contact_with_page_views_ends_the_same_whatever_the_batching(events, rnd, cuts):
    ends_the_same_whatever_the_batching(MARKETING, events, rnd, cuts)


@settings(max_examples=200)
@given(st.lists(st.one_of(order_events, item_events), max_size=14))
def test_a_repeated_batch_writes_nothing_but_reasserts_the_parent(events):
    first = project(ORDERS, Group("o1"), [e for e in events if e.source == "orders"],
                    [e for e in events if e.source == "order_items"])
    again = project(ORDERS, first.group, [e for e in events if e.source == "orders"],
                    [e for e in events if e.source == "order_items"])
    assert not again.parent_changed and not again.children_changed
    assert again.group.rev == first.group.rev
    assert all(outcome == "superseded" for _, outcome in again.outcomes)
    assert [(c.email, c.live, c.data) for c in again.contributions] == \
        [(c.email, c.live, c.data) for c in first.contributions if c.live or c.email in first.group.retired]


@settings(max_examples=200)
@given(st.lists(st.one_of(order_events, item_events), min_size=1, max_size=14), st.randoms())
def test_revisions_grow_exactly_when_a_document_changes(events, rnd):
    group = Group("o1")
    for batch in batches(events, rnd, 3):
        done = project(ORDERS, group, [e for e in batch if e.source == "orders"],
                       [e for e in batch if e.source == "order_items"])
        assert done.group.parent_rev == group.parent_rev + done.parent_changed
        assert done.group.children_rev == group.children_rev + done.children_changed
        group = done.group


@settings(max_examples=200)
@given(st.lists(st.one_of(contact_events, view_events), max_size=14), st.randoms())
def test_an_erasure_forgets_every_page_view_no_newer_than_itself_in_any_order(events, rnd):
    group, _ = run(MARKETING, batches(events, rnd, 2))
    erased = group.parent and group.parent["erased"]
    if erased:
        assert all(view["version"].millis > erased[0].millis for view in group.children.values())
        assert group.retired == (), "no email is kept after an erasure"


def test_an_email_change_retracts_the_order_from_the_old_customer_every_time():
    create = ChangeEvent("orders", "o1", UPSERT, Version(1, "b", 1, 0), {"customer_email": "a@x.com"}, True)
    change = ChangeEvent("orders", "o1", UPSERT, Version(2, "b", 2, 0), {"customer_email": "b@x.com"}, True)
    first = project(ORDERS, Group("o1"), [create])
    second = project(ORDERS, first.group, [change])
    assert [(c.email, c.live) for c in second.contributions] == [("a@x.com", False), ("b@x.com", True)]
    repeat = project(ORDERS, second.group, [change])
    assert [(c.email, c.live) for c in repeat.contributions] == [("a@x.com", False), ("b@x.com", True)]


def test_a_merged_contact_gives_its_page_views_to_the_primary():
    primary = ChangeEvent("marketing", "h1", UPSERT, Version(1, 1), {"email": "p@x.com", "merged_ids": {"h2": True}})
    merged = ChangeEvent("marketing", "h2", MERGE, Version(2, 2), parent_id="h1")
    view = ChangeEvent("pageviews", "v9", UPSERT, Version(3, "v9"), {"category": "bags"}, True, parent_id="h2")
    own = project(MARKETING, Group("h1"), [primary]).contributions
    theirs = project(MARKETING, Group("h2"), [merged], [view]).contributions
    assert [(p.owner_id, p.live) for p in theirs] == [("h1", True), ("h2", False)]
    (contribution,) = resolve_owner("h1", newest(p for p in [*own, *theirs] if p.owner_id == "h1"))
    assert contribution.email == "p@x.com"
    assert [v["category"] for v in contribution.data["browsing_history"]] == ["bags"]
    assert not is_alive(project(MARKETING, Group("h2"), [merged]).group.parent)
