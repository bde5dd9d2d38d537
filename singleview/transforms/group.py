"""Groupings whose values cross the shuffle as pickled bytes.

The FnApiRunner (batch on the DirectRunner) decodes every value it groups
and encodes it again, and writes and reads again whatever a Flatten joins
from several stages; for the project's records, which Beam pickles, that is
up to six pickle operations a value. Values pickled once before the grouping
and unpickled once after it cost two, and the runner only copies the bytes.
"""
from __future__ import annotations

import pickle

import apache_beam as beam


def sealed(keyed: tuple) -> tuple:
    key, value = keyed
    return key, pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def unsealed(grouped: tuple) -> tuple:
    key, values = grouped
    return key, [pickle.loads(v) for v in values]


def sealed_with_tag(keyed: tuple, tag: str) -> tuple:
    key, value = keyed
    return key, pickle.dumps((tag, value), pickle.HIGHEST_PROTOCOL)


def unsealed_by_tag(grouped: tuple, tags: list) -> tuple:
    key, values = grouped
    by_tag = {tag: [] for tag in tags}
    for tag, value in map(pickle.loads, values):
        by_tag[tag].append(value)
    return key, by_tag


class GroupPickled(beam.PTransform):
    """(key, value) -> (key, [value, ...]), as GroupByKey."""

    def expand(self, keyed):
        return (keyed | "Seal" >> beam.Map(sealed)
                | "GroupByKey" >> beam.GroupByKey()
                | "Unseal" >> beam.Map(unsealed))


class CoGroupPickled(beam.PTransform):
    """{tag: (key, value)} -> (key, {tag: [value, ...]}), as CoGroupByKey."""

    def expand(self, streams: dict):
        return ([pcoll | f"Seal {tag}" >> beam.Map(sealed_with_tag, tag) for tag, pcoll in streams.items()]
                | "Flatten" >> beam.Flatten()
                | "GroupByKey" >> beam.GroupByKey()
                | "Unseal" >> beam.Map(unsealed_by_tag, list(streams)))
