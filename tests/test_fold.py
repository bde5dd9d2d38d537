"""The entity fold: laws that make replays, retries and reordering converge."""
from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from singleview.fold import (APPLIED, SUPERSEDED, _compact, _expand, entity_email, fold_event, in_fold_order, is_alive,
                             new_entity)
from singleview.model import DELETE, ERASE, MERGE, RESTORE, UPSERT, ChangeEvent, Version

FIELDS = ("email", "first_name", "phone")


def upsert(version, **fields):
    return ChangeEvent("crm", "c1", UPSERT, Version(version), fields)


def fold(events, entity=None):
    entity = new_entity() if entity is None else entity
    outcomes = [fold_event(entity, e) for e in events]
    return entity, outcomes


values = st.one_of(st.none(), st.text("abc@", max_size=4), st.integers(0, 3),
                   st.dictionaries(st.sampled_from(("street", "city")), st.one_of(st.none(), st.text("ab", max_size=2), st.dictionaries(st.sampled_from(("x","y")), st.text("a", max_size=1), max_size=2)), max_size=2))
events = st.lists(st.builds(
    ChangeEvent,
    source=st.just("crm"), entity_id=st.just("c1"),
    op=st.sampled_from([UPSERT, UPSERT, UPSERT, DELETE, RESTORE, ERASE, MERGE]),
    version=st.integers(0, 20).map(Version),
    fields=st.dictionaries(st.sampled_from(FIELDS + ("address",)), values, max_size=3),
    parent_id=st.sampled_from([None, "c2", "c3"]),
    nulled=st.lists(st.sampled_from(("phone", "address.city", "address", "address.city.x")), max_size=2).map(tuple),
), max_size=12)


@settings(max_examples=300)
@given(events, st.randoms())
def test_projection_is_independent_of_order_and_duplication(evs, rnd):
    expected, _ = fold(evs)
    shuffled = evs + evs[: len(evs) // 2]
    rnd.shuffle(shuffled)
    got, _ = fold(shuffled)
    assert got == expected


@settings(max_examples=200)
@given(events, st.randoms())
def test_a_batch_has_one_fold_order_whatever_its_arrival_order(evs, rnd):
    """A retried bundle, whatever order it comes in, folds in the same order."""
    shuffled = evs + evs[: len(evs) // 3]
    expected = in_fold_order(shuffled)
    rnd.shuffle(shuffled)
    assert in_fold_order(shuffled) == expected


@settings(max_examples=200)
@given(events, st.integers(0, 12))
def test_projection_split_over_two_runs_equals_one(evs, cut):
    expected, _ = fold(evs)
    first, _ = fold(evs[:cut])
    second, _ = fold(evs[cut:], copy.deepcopy(first))
    assert second == expected


@settings(max_examples=300)
@given(events)
def test_an_event_is_superseded_exactly_when_it_changes_nothing(evs):
    """The applied/superseded counts are honest, on every path of the fold."""
    entity = new_entity()
    for e in evs:
        before = copy.deepcopy(entity)
        outcome = fold_event(entity, e)
        after = copy.deepcopy(entity)
        _expand(before)
        _expand(after)
        assert (outcome == SUPERSEDED) == (before == after), e


def test_field_level_last_writer_wins():
    entity, outcomes = fold([upsert(2, phone="new"), upsert(1, phone="old", first_name="Jane")])
    assert entity["fields"] == {"phone": "new", "first_name": "Jane"}
    assert outcomes == [APPLIED, APPLIED]


def test_duplicate_is_superseded():
    _, outcomes = fold([upsert(1, phone="x"), upsert(1, phone="x")])
    assert outcomes == [APPLIED, SUPERSEDED]


def test_an_unchanged_value_at_a_newer_version_still_outranks_older_writes():
    """A full image repeats values it did not change; their newer version still counts."""
    entity, outcomes = fold([upsert(1, phone="x"), upsert(3, first_name="J"),
                             upsert(3, phone="x", first_name="J"), upsert(2, phone="y")])
    assert entity["fields"]["phone"] == "x"
    assert outcomes == [APPLIED, APPLIED, APPLIED, SUPERSEDED]


def test_a_flat_value_replacing_a_nested_one_remembers_the_nested_leaves():
    """Whichever arrives first, the state records that address/city was written at 1."""
    nested, flat = upsert(1, address={"city": "Rome"}), upsert(2, address=None)
    assert fold([nested, flat])[0] == fold([flat, nested])[0]


def test_older_upsert_does_not_resurrect_a_delete():
    delete = ChangeEvent("crm", "c1", DELETE, Version(5))
    entity, _ = fold([upsert(1, email="a@x.com"), delete, upsert(3, phone="p")])
    assert not is_alive(entity) and entity_email("crm", entity) is None
    restored, _ = fold([upsert(1, email="a@x.com"), delete, ChangeEvent("crm", "c1", RESTORE, Version(6))])
    assert entity_email("crm", restored) == "a@x.com"


def test_erasure_forgets_fields_and_blocks_older_events():
    erase = ChangeEvent("marketing", "h1", ERASE, Version(5))
    entity, outcomes = fold([upsert(1, email="a@x.com"), erase, upsert(4, email="b@x.com")])
    assert entity["fields"] == {} and not is_alive(entity)
    assert outcomes[-1] == SUPERSEDED


def test_nested_fields_merge_per_leaf():
    entity, _ = fold([upsert(2, mailing_address={"city": "Rome"}),
                      upsert(1, mailing_address={"city": "Paris", "country": "IT"})])
    assert entity["fields"]["mailing_address"] == {"city": "Rome", "country": "IT"}


@settings(max_examples=200)
@given(events, st.integers(0, 12))
def test_state_stored_with_a_version_per_leaf_folds_the_same(evs, cut):
    """Documents written before versions were compacted kept one per leaf."""
    expected, _ = fold(evs)
    stored, _ = fold(evs[:cut])
    compacted = copy.deepcopy(stored)
    _compact(compacted)
    assert compacted == stored
    _expand(stored)
    fold(evs[cut:], stored)
    _compact(stored)
    assert stored == expected


def test_first_upsert_keeps_no_version_per_field_and_leaves_the_event_alone():
    address = {"city": "Rome"}
    event = upsert(2, phone="p", mailing_address=address)
    entity, _ = fold([event])
    assert entity["versions"] is None and entity["version"] == Version(2)
    fold_event(entity, upsert(3, mailing_address={"street": "Via Roma"}))
    assert address == {"city": "Rome"}
    assert entity["fields"]["mailing_address"] == {"city": "Rome", "street": "Via Roma"}
    assert entity["versions"] == {"phone": Version(2), "mailing_address/city": Version(2),
                                  "mailing_address/street": Version(3)}
