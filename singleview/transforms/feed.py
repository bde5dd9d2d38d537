"""The change feed: each ViewChange, once its writes are stored, published as an event on a topic."""
from __future__ import annotations

import logging
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from singleview.feed import NO_PAYLOAD, PAYLOADS, FeedEvent, feed_event
from singleview.io.topics import Message, check_topic_url, is_permanent, shared_topic

log = logging.getLogger(__name__)


class PublishViewChangesFn(beam.DoFn):
    """Publish a bundle's events in one acknowledged call (per `MAX_PENDING`), each customer's in `_rev` order,
    through the process's one open topic of the URL.

    A publish that fails is repeated for up to `OUTAGE_SECONDS` (a broker
    restart), then fails the bundle, which the runner retries: events are
    delivered at least once, never lost inside a run. A refusal (no such
    topic, no permission) fails at once.
    """

    MAX_PENDING = 1000
    OUTAGE_SECONDS = 300

    def __init__(self, url: str, payload: str = NO_PAYLOAD):
        self.url, self.payload = url, payload

    def setup(self):
        self.topic = shared_topic(self.url)
        self.published = Metrics.counter("singleview", "changes_published")
        self.publishing = Metrics.counter("singleview", "changes_publish_ms")  # waiting for acks, summed

    def start_bundle(self):
        self.pending: list[FeedEvent] = []

    def process(self, change):
        event = feed_event(change, self.payload)
        if event is not None:
            self.pending.append(event)
        if len(self.pending) >= self.MAX_PENDING:
            self._flush()

    def finish_bundle(self):
        self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        events = sorted(self.pending, key=lambda e: int(e.attributes["_rev"]))
        messages = [Message(e.data, e.key, e.attributes) for e in events]
        started = time.monotonic()
        deadline, pause = started + self.OUTAGE_SECONDS, 0.5
        while True:
            try:
                self.topic.publish(messages)
                break
            except Exception as error:  # each client has errors of its own; all but a refusal are worth a repeat
                if is_permanent(error) or time.monotonic() > deadline:
                    raise
                log.warning("publish to %s failed (%s); retrying in %.1f s", self.url, error, pause)
                time.sleep(pause)
                pause = min(pause * 2, 10.0)
        self.published.inc(len(messages))
        self.publishing.inc(round((time.monotonic() - started) * 1000))
        self.pending = []


class PublishViewChanges(beam.PTransform):
    """ViewChanges -> feed events on `url` (pubsub://projects/P/topics/T or kafka://HOST:PORT/TOPIC).

    `payload` "after" puts the whole document in each upsert; "none" sends
    only what changed, for apps that read the view when they need it.
    """

    def __init__(self, url: str, payload: str = NO_PAYLOAD):
        super().__init__()
        check_topic_url(url)
        if payload not in PAYLOADS:
            raise ValueError(f"--sv_changes_payload must be one of {', '.join(PAYLOADS)}, got {payload!r}")
        self.url, self.payload = url, payload

    def expand(self, changes):
        return changes | "Publish" >> beam.ParDo(PublishViewChangesFn(self.url, self.payload))
