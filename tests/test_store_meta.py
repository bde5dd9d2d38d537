"""What nothing queries (a view's `_meta`, a projection's entities) is packed as one BSON binary
(io/documents.py): read back as written, the old form passed through."""
from __future__ import annotations

from datetime import datetime, timezone

from bson.codec_options import CodecOptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from singleview.io.documents import PACKED, children_doc, group_of, packed, parent_doc, unpacked
from singleview.projection import Group
from singleview.sources import SECTIONS

from tests.test_fold import fold, upsert

OPTIONS = CodecOptions(tz_aware=True)
leaves = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.text(max_size=8),
                   st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1),
                                timezones=st.just(timezone.utc)).map(lambda d: d.replace(microsecond=d.microsecond
                                                                                          // 1000 * 1000)))
values = st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text("abcxyz_", min_size=1, max_size=5),
                                                                      inner, max_size=4)), max_leaves=20)
metas = st.fixed_dictionaries({"contributions": st.lists(st.dictionaries(st.sampled_from(["source", "id", "rev",
                                                                                         "live", "data"]), values),
                                                         max_size=4)})


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # a loaded machine is slow, not wrong
@given(metas)
def test_packed_meta_reads_back_as_written(meta):
    tree = packed(meta)
    assert set(tree) == {PACKED} and isinstance(tree[PACKED], bytes)
    assert unpacked(tree, OPTIONS) == meta


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # a loaded machine is slow, not wrong
@given(metas)
def test_meta_written_as_fields_is_read_as_it_is(meta):
    assert unpacked(meta, OPTIONS) == meta


def test_no_meta_is_no_contributions():
    assert unpacked(None, OPTIONS) == {} and unpacked({}, OPTIONS) == {}


def test_a_projection_is_stored_packed_and_read_back_whatever_its_form():
    section = SECTIONS["orders"]
    entity = lambda v, **fields: fold([upsert(v, **fields)])[0]
    group = Group("o1", parent=entity(2, customer_email="a@x.io", total=3), parent_rev=2,
                  children={"i1": entity(3, sku="s", qty=1), "i2": entity(4, sku="t", qty=2)}, children_rev=1,
                  retired=("b@x.io",))
    parent, children = parent_doc(section, group, "a@x.io"), children_doc(section, group)
    assert set(parent["state"]) == {PACKED} and set(children[section.children_key]) == {PACKED}
    assert group_of(section, "o1", parent, children) == group
    as_fields = (dict(parent, state=unpacked(parent["state"])),
                 dict(children, **{section.children_key: unpacked(children[section.children_key])}))
    assert "fields" in as_fields[0]["state"] and group_of(section, "o1", *as_fields) == group
