"""Contributions and the single-view document (pure): the merge per customer, and render."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from singleview.view import Contribution, ViewState, merge_view, newest, render, view_rev

contributions = st.lists(st.builds(
    Contribution,
    section=st.sampled_from(["crm", "orders"]), entity_id=st.sampled_from(["1", "2"]),
    email=st.just("a@x.com"), rev=st.tuples(st.integers(1, 3), st.integers(0, 3)),  # a parent has revision 1 on
    live=st.booleans(), data=st.none(),
), max_size=10)


def merged(*batches):
    return newest(c for batch in batches for c in batch)


@given(contributions, contributions, st.randoms())
def test_contribution_merge_is_commutative_associative_idempotent(a, b, rnd):
    ab = merged(a, b)
    assert ab == merged(b, a)
    assert merged(ab.values(), ab.values()) == ab
    everything = a + b
    rnd.shuffle(everything)
    assert merged(everything) == ab
    assert merged(merged(a[:1]).values(), a[1:] + b) == ab


def history(slot: str):
    """Observations of one entity as a worker makes them: both revisions only grow, one at least."""
    steps = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)).filter(lambda d: sum(d) > 0),
                     min_size=1, max_size=5)

    def observe(deltas, lives):
        revs, r0, r1 = [], 1, 0
        for d0, d1 in deltas:
            r0, r1 = r0 + d0, r1 + d1
            revs.append((r0, r1))
        return [Contribution("crm", slot, "a@x.com", rev, live) for rev, live in zip(revs, lives)]
    return st.builds(observe, steps, st.lists(st.booleans(), min_size=5, max_size=5))


@given(history("1"), history("2"), st.randoms())
def test_a_view_revision_grows_with_every_newer_contribution(one, two, rnd):
    """Equal revisions mean equal contributions: a re-run writes the same revision for the same view."""
    observed = one + two
    a = rnd.sample(observed, rnd.randint(0, len(observed)))
    b = rnd.sample(observed, rnd.randint(0, len(observed)))
    first, both = merged(a), merged(a, b)
    assert view_rev(both.values()) >= view_rev(first.values())
    if view_rev(both.values()) == view_rev(first.values()):
        assert both == first


def test_retraction_from_email_change_wins_over_stale_assertion():
    stale = Contribution("orders", "1", "a@x.com", (3, 6), True, {"order_id": "1", "items": []})
    retraction = Contribution("orders", "1", "a@x.com", (4, 6), False)
    assert list(merged([retraction], [stale]).values()) == [retraction]
    assert render("a@x.com", [retraction]) is None


def crm(cid, rev, live=True):
    return Contribution("crm", cid, "a@x.com", rev, live, {"crm_id": cid, "first_name": "A", "changed_at": None}
                        if live else None)


def test_merge_view_writes_only_what_changes_and_removes_a_view_nothing_asserts():
    state, change = merge_view(ViewState("a@x.com"), [crm("c1", (1, 0))])
    assert change.doc["crm_info"]["crm_id"] == "c1" and change.rev == 1 and "crm_info" in change.sections
    assert merge_view(state, [crm("c1", (1, 0))]) == (state, None), "a repeat changes nothing"
    assert merge_view(ViewState("b@x.com"), []) == (ViewState("b@x.com"), None), "an empty pane writes nothing"
    state, change = merge_view(state, [crm("c1", (2, 0), live=False)])
    assert change.doc is None and not state.exists and state.tombstoned and change.rev == 2


def test_a_rebuild_retracts_what_no_projection_asserts_any_more():
    state, _ = merge_view(ViewState("a@x.com"), [crm("c1", (1, 0)), crm("c2", (1, 0))])
    state, change = merge_view(state, [crm("c1", (2, 0))], complete=True)
    assert change.doc["crm_info"]["crm_ids"] == ["c1"]
    orphan = ViewState("o@x.com", exists=True)
    assert merge_view(orphan, [], complete=True)[1].doc is None


def test_render_orders_totals_and_lists_in_a_total_order():
    orders = [
        Contribution("orders", oid, "a@x.com", (1, 1), True,
                     {"order_id": oid, "grand_total": total, "order_currency_code": cur, "status": status,
                      "created_at": created, "items": [{"item_id": "9", "sku": "B"}, {"item_id": "10", "sku": "A"}],
                      "changed_at": created})
        for oid, total, cur, status, created in [
            ("1", "10.5000", "USD", "complete", "2024-01-01T00:00:00.000Z"),
            ("2", "0.2500", "USD", "pending", "2024-02-01T00:00:00.000Z"),
            ("3", "7.0000", "EUR", "canceled", "2024-03-01T00:00:00.000Z")]]
    doc = render("a@x.com", orders)
    assert [o["order_id"] for o in doc["order_history"]] == ["3", "2", "1"]
    assert [i["item_id"] for i in doc["order_history"][0]["items"]] == ["9", "10"]
    assert doc["stats"]["lifetime_value"] == {"USD": "10.7500"}
    assert doc["stats"]["order_count"] == 3
    assert doc["sources"] == ["orders"]
    assert render("a@x.com", list(reversed(orders))) == doc
