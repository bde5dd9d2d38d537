"""A view's `_meta` packed as one BSON binary (io/store.py): read back as written, old form passed through."""
from __future__ import annotations

from datetime import datetime, timezone

from bson.codec_options import CodecOptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from singleview.io.store import PACKED, packed_meta, unpacked_meta

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
    packed = packed_meta(meta)
    assert set(packed) == {PACKED} and isinstance(packed[PACKED], bytes)
    assert unpacked_meta(packed, OPTIONS) == meta


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # a loaded machine is slow, not wrong
@given(metas)
def test_meta_written_as_fields_is_read_as_it_is(meta):
    assert unpacked_meta(meta, OPTIONS) == meta


def test_no_meta_is_no_contributions():
    assert unpacked_meta(None, OPTIONS) == {} and unpacked_meta({}, OPTIONS) == {}
