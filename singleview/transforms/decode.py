"""Decode raw messages into change events; what cannot be decoded is a dead letter."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from singleview.formats import DecoderConfig, decode
from singleview.model import MERGE, UPSERT, ChangeEvent, DeadLetter, DecodeError, RawMessage

DEAD_LETTERS = "dead_letters"


def expand_contact_merge(event: ChangeEvent) -> list[ChangeEvent]:
    """A HubSpot merge tombstones each merged contact, pointing at the primary,
    and the primary remembers them, so their page views join its own."""
    if event.op != MERGE:
        return [event]
    merged = sorted(set(event.merged_ids) - {event.entity_id})
    primary = ChangeEvent(event.source, event.entity_id, UPSERT, event.version,
                          {"merged_ids": {m: True for m in merged}})
    return [primary] + [ChangeEvent(event.source, m, MERGE, event.version, parent_id=event.entity_id)
                        for m in merged]


class DecodeFn(beam.DoFn):
    def __init__(self, config: DecoderConfig, fmt: str | None = None):
        self.config = config
        self.fmt = fmt
        self.events = Metrics.counter("singleview", "events_decoded")
        self.skipped = Metrics.counter("singleview", "messages_skipped")
        self.dead = Metrics.counter("singleview", "dead_lettered")

    def process(self, message: RawMessage):
        try:
            events = [e for decoded in decode(message, self.config, self.fmt) for e in expand_contact_merge(decoded)]
        except DecodeError as error:
            self.dead.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, DeadLetter.of(message, str(error)))
            return
        if not events:
            self.skipped.inc()
        self.events.inc(len(events))
        yield from events


class DecodeMessages(beam.PTransform):
    """RawMessage -> ChangeEvent, with dead letters on the `dead_letters` tag."""

    def __init__(self, config: DecoderConfig, fmt: str | None = None):
        super().__init__()
        self.config = config
        self.fmt = fmt

    def expand(self, messages):
        return messages | "Decode" >> beam.ParDo(DecodeFn(self.config, self.fmt)).with_outputs(
            DEAD_LETTERS, main="events")
