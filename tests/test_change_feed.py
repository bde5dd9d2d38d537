"""The change feed: events built from ViewChanges (pure), and published by batch and streaming runs
to the local Pub/Sub server and to Kafka, read back and folded by `_rev` into the views in MongoDB."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from singleview.feed import AFTER, DELETE, UPSERT, feed_event, fold, later, live, plain_document
from singleview.io.files import split_line
from singleview.io.pubsub import ensure_topic_and_subscription, publish
from singleview.io.topics import Message, is_permanent, open_topic
from singleview.samples import generate
from singleview.transforms.feed import PublishViewChanges
from singleview.view import Contribution, ViewChange, ViewState, merge_view, retired_id

from tests.test_kafka import kafka_addr  # noqa: F401 (fixture)
from tests.test_pipeline import SOURCES, run_into
from tests.test_streaming import PROJECT, batch_views, pubsub_host, wait_for_views  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[1]

# A customer known only to HubSpot, who then asks to be forgotten: their view is removed by the erasure.
ERIN, ERIN_FIRST, ERIN_LAST, ERIN_ID = "erin.quillfeather@example.com", "Erin", "Quillfeather", 991000001
ERIN_PII = (ERIN.encode(), ERIN_FIRST.encode(), ERIN_LAST.encode(), str(ERIN_ID).encode())


def hubspot_line(*events, start: int = 0) -> bytes:
    batch = [{"eventId": 990000 + start + i, "subscriptionId": 42, "portalId": 62515, "appId": 1160452,
              "occurredAt": 1_717_000_000_000 + start + i, "subscriptionType": kind, "attemptNumber": 0,
              "objectId": ERIN_ID, "changeSource": "CRM", **extra} for i, (kind, extra) in enumerate(events)]
    return json.dumps(batch).encode()


def erin_lines() -> dict[str, list[bytes]]:
    changes = [("contact.creation", {})] + [
        ("contact.propertyChange", {"propertyName": name, "propertyValue": value})
        for name, value in (("email", ERIN), ("firstname", ERIN_FIRST), ("lastname", ERIN_LAST))]
    view = {"objectType": "CONTACT", "objectId": str(ERIN_ID), "eventType": "e_visited_page",
            "occurredAt": "2024-05-29T16:30:00.000Z", "id": "erin-view-1",
            "properties": {"hs_url": "https://shop.example.com/category/shoes/x", "hs_title": "X"}}
    return {"marketing": [hubspot_line(*changes)], "pageviews": [json.dumps(view).encode()]}


ERASURE = hubspot_line(("contact.privacyDeletion", {}), start=300_000)  # after the page view


def inputs(directory: Path, lines: dict[str, list[bytes]], copies: int = 1) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    for source, rows in lines.items():
        for copy in range(copies):
            (directory / f"{source}-{copy}.jsonl").write_bytes(b"\n".join(rows) + b"\n")
    return [f"--input={source}={directory}/{source}-*.jsonl" for source in lines]


def with_erin(generated: dict) -> dict:
    extra = erin_lines()
    return {source: [*generated[source], *extra.get(source, [])] for source in SOURCES}


def stored(database) -> dict[str, dict]:
    """The single views in MongoDB, keyed and shaped as the feed carries them."""
    return {retired_id(d["_id"]): plain_document(d) for d in database["customer_sv"].find()}


def assert_no_pii(data: bytes, attributes: dict, key: str | bytes | None) -> None:
    text = b" ".join([data, json.dumps(attributes).encode(), key if isinstance(key, bytes) else (key or "").encode()])
    for pii in ERIN_PII:
        assert pii.lower() not in text.lower(), f"{pii!r} in the delete event {text!r}"


# --- the events (pure) -----------------------------------------------------

def change(doc: dict | None, rev: int = 3, sections=("email", "name")) -> ViewChange:
    return ViewChange("a@x.com", rev, doc, tuple(sections), ())


def test_an_upsert_is_keyed_by_the_hash_and_carries_the_document_only_when_asked():
    from datetime import datetime, timezone
    doc = {"_id": "a@x.com", "email": "a@x.com", "updated_at": datetime(2024, 5, 29, 16, 30, tzinfo=timezone.utc),
           "_rev": 3}
    bare, full = feed_event(change(doc)), feed_event(change(doc), AFTER)
    assert bare.key == full.key == retired_id("a@x.com") and bare.attributes == {"_rev": "3", "op": UPSERT}
    assert json.loads(bare.data) == {"key": bare.key, "email": "a@x.com", "_rev": 3, "op": UPSERT,
                                     "sections": ["email", "name"]}
    assert json.loads(full.data)["doc"] == {"_id": "a@x.com", "email": "a@x.com",
                                            "updated_at": "2024-05-29T16:30:00.000Z", "_rev": 3}


def test_a_delete_names_no_customer_and_the_removal_of_a_view_never_stored_is_not_published():
    event = feed_event(change(None, 9, ("crm_info", "email")), AFTER)
    assert json.loads(event.data) == {"key": retired_id("a@x.com"), "_rev": 9, "op": DELETE,
                                      "sections": ["crm_info", "email"]}
    assert b"a@x.com" not in event.data and event.attributes == {"_rev": "9", "op": DELETE}
    assert feed_event(change(None, 9, ())) is None


def test_a_rerun_of_a_pane_makes_no_view_change_so_no_event():
    c = Contribution("crm", "c1", "a@x.com", (1, 0), True, {"crm_id": "c1", "first_name": "A", "changed_at": None})
    state, first = merge_view(ViewState("a@x.com"), [c])
    assert feed_event(first) is not None and merge_view(state, [c]) == (state, None)


def test_an_unknown_payload_or_a_url_that_is_no_topic_is_refused_at_construction():
    for url in ("pubsub://projects/p/subscriptions/s", "http://x/t", "kafka://host/t"):
        with pytest.raises(ValueError, match="expected"):
            PublishViewChanges(url)
    with pytest.raises(ValueError, match="payload"):
        PublishViewChanges("kafka://h:1/t", "before")


histories = st.dictionaries(st.sampled_from("abcd"), st.lists(st.sampled_from([UPSERT, DELETE]), min_size=1,
                                                              max_size=5), min_size=1)


@given(histories, st.randoms(use_true_random=False), st.integers(1, 3))
def test_the_fold_keeps_each_customers_last_event_whatever_the_order_and_the_repeats(history, rnd, copies):
    """Revisions grow per customer; the feed may repeat and reorder events across customers and within one."""
    events = [{"key": key, "_rev": rev * 10 + rnd.randint(0, 9), "op": op}
              for key, ops in history.items() for rev, op in enumerate(ops)]
    last = {}
    for event in events:
        last[event["key"]] = event
    delivered = events * copies
    rnd.shuffle(delivered)
    assert fold(delivered) == last
    assert live(fold(delivered)) == {k: e for k, e in last.items() if e["op"] == UPSERT}


def test_a_delete_beats_an_upsert_of_the_same_revision_and_a_repeat_changes_nothing():
    upsert, delete = {"key": "k", "_rev": 4, "op": UPSERT}, {"key": "k", "_rev": 4, "op": DELETE}
    assert later(upsert, delete) and not later(delete, upsert) and not later(upsert, dict(upsert))


# --- reading the topics back -------------------------------------------------

@dataclass(frozen=True)
class Delivered:
    """A feed event as an app receives it: body, attributes (Kafka headers) and ordering key (Kafka key)."""

    data: bytes
    attributes: dict
    key: str

    @property
    def event(self) -> dict:
        return json.loads(self.data)


class PubSubFeed:
    """A subscription of the feed's topic, drained by pulls (ordered delivery, as an app would ask)."""

    def __init__(self, name: str):
        from google.cloud import pubsub_v1
        self.url = f"pubsub://projects/{PROJECT}/topics/{name}"
        ensure_topic_and_subscription(PROJECT, name)
        self.subscriber = pubsub_v1.SubscriberClient()
        self.path = self.subscriber.subscription_path(PROJECT, name)
        self.subscriber.create_subscription(request={"name": self.path, "topic": f"projects/{PROJECT}/topics/{name}",
                                                     "enable_message_ordering": True, "ack_deadline_seconds": 60})

    def drain(self, idle: int = 2) -> list[Delivered]:
        """Every message there is now: pulls until `idle` in a row come back empty."""
        got, empty = [], 0
        while empty < idle:
            response = self.subscriber.pull(subscription=self.path, max_messages=1000, timeout=10)
            if not response.received_messages:
                empty += 1
                continue
            empty = 0
            got += [Delivered(r.message.data, dict(r.message.attributes), r.message.ordering_key)
                    for r in response.received_messages]
            self.subscriber.acknowledge(subscription=self.path, ack_ids=[r.ack_id for r in response.received_messages])
        return got

    def close(self):
        self.subscriber.close()


class KafkaFeed:
    """A consumer of the feed's topic from its earliest offset, in a group of its own."""

    def __init__(self, addr: str, topic: str):
        from confluent_kafka import Consumer
        self.url = f"kafka://{addr}/{topic}"
        self.consumer = Consumer({"bootstrap.servers": addr, "group.id": uuid.uuid4().hex,
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.consumer.subscribe([topic])

    def drain(self, idle: int = 2) -> list[Delivered]:
        """What arrives until `idle` times 2.5 s pass without a record."""
        got, quiet_since = [], time.monotonic()
        while time.monotonic() - quiet_since < idle * 2.5:
            record = self.consumer.poll(0.5)
            if record is None or record.error():
                continue
            got.append(Delivered(record.value(), {k: v.decode() for k, v in record.headers() or ()},
                                 record.key().decode()))
            quiet_since = time.monotonic()
        return got

    def close(self):
        self.consumer.close()


def inversions(keyed_revs: list[tuple[str, int]]) -> int:
    """How many events arrived after a later event of the same customer."""
    seen, count = {}, 0
    for key, rev in keyed_revs:
        count += rev < seen.get(key, -1)
        seen[key] = max(rev, seen.get(key, -1))
    return count


def test_a_publish_to_a_missing_topic_fails_with_the_servers_refusal_and_the_keys_resume(pubsub_host, database_name):
    """The refusal is what surfaces (not a complaint about resuming ordering keys), it is not repeated,
    and once the topic exists the same publisher publishes those keys again."""
    from google.api_core.exceptions import NotFound
    name = f"late-{database_name[-10:]}"
    topic = open_topic(f"pubsub://projects/{PROJECT}/topics/{name}")
    # Enough keys that some batches fail after the first refusal surfaces (each key is paused then).
    messages = [Message(b"{}", f"k{i % 40}", {"op": UPSERT}) for i in range(200)]
    try:
        with pytest.raises(NotFound) as refused:
            topic.publish(messages)
        assert is_permanent(refused.value) and not is_permanent(TimeoutError())
        ensure_topic_and_subscription(PROJECT, name)
        assert topic.publish(messages) == 200
    finally:
        topic.close()


# --- batch ---------------------------------------------------------------------

def assert_keyed_and_labelled(delivered: list[Delivered]) -> None:
    """The ordering key (Kafka key) is the event's key; the attributes (headers) repeat `_rev` and `op`."""
    assert all(d.key == d.event["key"] and d.attributes == {"_rev": str(d.event["_rev"]), "op": d.event["op"]}
               for d in delivered)


def assert_one_delete_without_pii(delivered: list[Delivered]) -> None:
    deletes = [d for d in delivered if d.event["op"] == DELETE]
    assert [d.key for d in deletes] == [retired_id(ERIN)]
    assert_no_pii(deletes[0].data, deletes[0].attributes, deletes[0].key)


def live_docs(delivered) -> dict:
    return {k: e["doc"] for k, e in live(fold(d.data for d in delivered)).items()}


def test_batch_feed_on_pubsub_folds_to_the_views_a_rerun_publishes_nothing_an_erasure_no_pii(
        tmp_path, pubsub_host, mongo_uri, mongo_client, database_name):
    feed = PubSubFeed(f"feed-{database_name[-10:]}")
    args = ["--sv_changes_topic", feed.url, "--sv_changes_payload", AFTER]
    first = inputs(tmp_path / "in", with_erin(generate(customers=12, seed=9)))
    try:
        summary = run_into(mongo_uri, database_name, first + args)
        delivered = feed.drain()
        views = stored(mongo_client[database_name])
        assert retired_id(ERIN) in views and summary.get("changes_published") == len(delivered) == len(views)
        assert_keyed_and_labelled(delivered)
        assert live_docs(delivered) == views

        again = run_into(mongo_uri, database_name, first + args)
        assert again.get("views_written") == 0 and again.get("changes_published") == 0 and feed.drain() == []

        erased = run_into(mongo_uri, database_name, inputs(tmp_path / "erase", {"marketing": [ERASURE]}) + args)
        deletes = feed.drain()
        assert erased.get("views_removed") == 1 and len(deletes) == 1
        assert_keyed_and_labelled(deletes)
        assert_one_delete_without_pii(deletes)
    finally:
        feed.close()
    views = stored(mongo_client[database_name])
    assert retired_id(ERIN) not in views
    replayed = (delivered + deletes) * 2
    random.Random(5).shuffle(replayed)
    for events in (delivered + deletes, replayed):
        assert live_docs(events) == views


def test_batch_feed_on_kafka_of_doubled_input_holds_one_event_per_view(tmp_path, kafka_addr, mongo_uri,
                                                                        mongo_client, database_name):
    feed = KafkaFeed(kafka_addr, f"feed-{database_name[-10:]}")
    args = inputs(tmp_path / "in", with_erin(generate(customers=12, seed=9)), copies=2)
    try:
        summary = run_into(mongo_uri, database_name, args + ["--sv_changes_topic", feed.url])
        delivered = feed.drain()
    finally:
        feed.close()
    views = stored(mongo_client[database_name])
    assert summary.get("changes_published") == len(delivered) == len(views)
    assert_keyed_and_labelled(delivered)
    assert all("doc" not in d.event for d in delivered), "payload none by default"
    assert {k: (e["email"], e["_rev"]) for k, e in live(fold(d.data for d in delivered)).items()} == \
        {k: (d["email"], d["_rev"]) for k, d in views.items()}


# --- streaming -------------------------------------------------------------------

def drained_until(feed, done, seconds: float) -> list[Delivered]:
    """What the feed delivers until `done(everything so far)` or time runs out."""
    deadline, got = time.monotonic() + seconds, []
    while time.monotonic() < deadline:
        got += feed.drain(idle=1)
        if done(got):
            break
    return got


@pytest.fixture(params=["pubsub", "kafka"])
def feed(request, database_name):
    name = f"feed-{database_name[-10:]}"
    opened = PubSubFeed(name) if request.param == "pubsub" else KafkaFeed(request.getfixturevalue("kafka_addr"), name)
    yield opened
    opened.close()


def test_streaming_feed_folds_to_the_views_and_an_erasure_is_a_delete_without_pii(
        tmp_path, pubsub_host, feed, mongo_uri, mongo_client, database_name):
    """Streaming from Pub/Sub on the DirectRunner, the feed on Pub/Sub or on Kafka."""
    generated = with_erin(generate(customers=12, seed=9))
    expected = batch_views(tmp_path, generated, mongo_uri, mongo_client, database_name)
    suffix, database = database_name[-10:], mongo_client[database_name]
    args = []
    for source in SOURCES:
        ensure_topic_and_subscription(PROJECT, f"{source}-{suffix}", f"{source}-{suffix}")
        args.append(f"--input={source}=pubsub://projects/{PROJECT}/subscriptions/{source}-{suffix}")
    log_path = tmp_path / "stream.log"
    worker = subprocess.Popen([sys.executable, str(ROOT / "run_pipeline.py"), "--streaming", "--mongo_uri", mongo_uri,
                               "--database", database_name, *args, "--sv_changes_topic", feed.url,
                               "--sv_changes_payload", AFTER],
                              stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
                              env=dict(os.environ, PUBSUB_EMULATOR_HOST=pubsub_host))
    try:
        for source, lines in generated.items():
            publish(PROJECT, f"{source}-{suffix}", [m.data for line in lines for m in split_line(source, line)])
        assert wait_for_views(worker, database, expected, 180, log_path) == expected  # 120 s was short on a loaded box
        delivered = drained_until(feed, lambda got: live_docs(got) == stored(database), 60)
        assert live_docs(delivered) == stored(database)

        publish(PROJECT, f"marketing-{suffix}", [m.data for m in split_line("marketing", ERASURE)])
        gone = {email: view for email, view in expected.items() if email != ERIN}
        assert wait_for_views(worker, database, gone, 60, log_path) == gone
        delivered += drained_until(feed, lambda got: any(d.event["op"] == DELETE for d in got), 60)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert_keyed_and_labelled(delivered)
    assert_one_delete_without_pii(delivered)
    assert live_docs(delivered) == stored(database)
    order = [(d.key, d.event["_rev"]) for d in delivered]
    print(f"streaming feed: {len(delivered)} events, {len(set(k for k, _ in order))} customers,"
          f" {inversions(order)} delivered after a later event of their customer")
