"""POST /webhooks/hubspot end to end: the app under uvicorn, signed requests, and
what arrives on a real topic of the local Pub/Sub server and of the local Kafka broker.

Every test ends by sending one more signed batch (a sentinel) and reading the
topic until it is in (and, on Pub/Sub, which delivers in no set order, until a
pull comes back empty): the rest is everything the test's requests published.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone

import httpx
import pytest

from singleview.formats import DecoderConfig, decode
from singleview.model import UPSERT, ChangeEvent, RawMessage, Version
from singleview.serving import Settings, create_app
from singleview.serving.hubspot_signature import MAX_AGE_MS, sign_v2, sign_v3

from tests.live import serve
from tests.test_kafka import kafka_addr  # noqa: F401  (fixture)
from tests.test_streaming import PROJECT, pubsub_host  # noqa: F401  (fixture)

SECRET = "9f1c6a54-webhook-test-secret"
KEY = "webhook-test-api-key-0123456789"
PATH = "/webhooks/hubspot"


def event(event_id: int, object_id: int, name: str, value: str) -> dict:
    return {"eventId": event_id, "subscriptionId": 2119, "portalId": 62515, "appId": 1160452,
            "occurredAt": 1717000000000 + event_id, "subscriptionType": "contact.propertyChange",
            "attemptNumber": 0, "objectId": object_id, "changeSource": "CRM",
            "propertyName": name, "propertyValue": value}


# Spaces after separators and a non-ASCII name: a publish that re-serialised the JSON would show.
BATCH = json.dumps([event(1, 901, "email", " Zoë.Doe@Example.com"), event(2, 901, "firstname", "Zoë"),
                    event(3, 902, "hs_email_optout", "true")], ensure_ascii=False).encode()
EXPECTED_EVENTS = [
    ChangeEvent("marketing", "901", UPSERT, Version(1717000000001, 1), {"email": "zoë.doe@example.com"}),
    ChangeEvent("marketing", "901", UPSERT, Version(1717000000002, 2), {"firstname": "Zoë"}),
    ChangeEvent("marketing", "902", UPSERT, Version(1717000000003, 3), {"hs_email_optout": "true"}),
]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def signed(url: str, body: bytes, timestamp: int | None = None, secret: str = SECRET) -> dict[str, str]:
    """The headers HubSpot sends with a v3 signature."""
    stamp = str(now_ms() if timestamp is None else timestamp)
    return {"Content-Type": "application/json", "X-HubSpot-Request-Timestamp": stamp,
            "X-HubSpot-Signature-v3": sign_v3(secret, "POST", url, body, stamp)}


def post(base: str, body: bytes, headers: dict[str, str], query: str = "") -> httpx.Response:
    return httpx.post(f"{base}{PATH}{query}", content=body, headers=headers, timeout=30)


class PubSubTopic:
    def __init__(self, name: str):
        from google.cloud import pubsub_v1
        from singleview.io.pubsub import ensure_topic_and_subscription
        ensure_topic_and_subscription(PROJECT, name, name)
        self.url = f"pubsub://projects/{PROJECT}/topics/{name}"
        self._subscriber = pubsub_v1.SubscriberClient()
        self._path = self._subscriber.subscription_path(PROJECT, name)

    def read_until(self, sentinel: bytes) -> list[RawMessage]:
        from singleview.io.pubsub import to_raw_message  # the pipeline's own conversion
        got: list[RawMessage] = []
        deadline = time.monotonic() + 30
        drained = False
        # Pull delivers in no particular order: go on until the sentinel is in and a pull comes back empty
        # (everything published before it was acknowledged, so stored, before the sentinel was sent).
        while not (drained and any(m.data == sentinel for m in got)) and time.monotonic() < deadline:
            response = self._subscriber.pull(subscription=self._path, max_messages=100, timeout=10)
            got += [to_raw_message("marketing", r.message) for r in response.received_messages]
            drained = not response.received_messages
            if response.received_messages:
                self._subscriber.acknowledge(subscription=self._path,
                                             ack_ids=[r.ack_id for r in response.received_messages])
        return got

    def close(self) -> None:
        self._subscriber.close()


class KafkaTopic:
    def __init__(self, addr: str, name: str):
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
        self.url = f"kafka://{addr}/{name}"
        self._consumer = Consumer({"bootstrap.servers": addr, "group.id": name, "enable.auto.commit": False})
        self._consumer.assign([TopicPartition(name, 0, OFFSET_BEGINNING)])  # one partition (scripts/kafka.sh)

    def read_until(self, sentinel: bytes) -> list[RawMessage]:
        got: list[RawMessage] = []
        deadline = time.monotonic() + 30
        while not any(m.data == sentinel for m in got) and time.monotonic() < deadline:
            record = self._consumer.poll(0.5)
            if record is not None and record.error() is None:
                headers = {k: v.decode() for k, v in record.headers() or ()}
                got.append(RawMessage("marketing", record.value(), headers))
        return got

    def close(self) -> None:
        self._consumer.close()


@pytest.fixture(params=["pubsub", "kafka"])
def topic(request):
    name = f"hubspot-{uuid.uuid4().hex[:10]}"
    if request.param == "pubsub":
        request.getfixturevalue("pubsub_host")
        opened = PubSubTopic(name)
    else:
        opened = KafkaTopic(request.getfixturevalue("kafka_addr"), name)
    yield opened
    opened.close()


@pytest.fixture
def api(mongo_uri, database_name):
    """A factory: the real app under uvicorn with these webhook settings."""
    @contextmanager
    def start(**webhook):
        settings = Settings(mongo_uri=mongo_uri, database=database_name, api_keys=(KEY,), **webhook)
        with serve(create_app(settings)) as base:
            yield base
    return start


def published(topic, api) -> list[RawMessage]:
    """Everything on the topic before a sentinel batch sent now through a well-configured app."""
    sentinel = json.dumps([event(999, 999, "firstname", f"sentinel-{uuid.uuid4().hex}")]).encode()
    with api(hubspot_client_secret=SECRET, hubspot_topic=topic.url) as base:
        assert post(base, sentinel, signed(f"{base}{PATH}", sentinel)).status_code == 204
    got = topic.read_until(sentinel)
    assert [m.data for m in got].count(sentinel) == 1, "the sentinel never arrived"
    return [m for m in got if m.data != sentinel]


def test_a_signed_batch_arrives_byte_for_byte_with_its_receive_time(topic, api):
    with api(hubspot_client_secret=SECRET, hubspot_topic=topic.url) as base:
        before = datetime.now(timezone.utc)
        response = post(base, BATCH, signed(f"{base}{PATH}", BATCH))
        after = datetime.now(timezone.utc)
    assert (response.status_code, response.content) == (204, b"")
    [message] = published(topic, api)
    assert message.data == BATCH
    received = datetime.fromisoformat(message.attributes["received_at"])
    assert message.attributes["received_at"].endswith("Z") and received.tzinfo is not None
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= received <= after
    assert decode(message, DecoderConfig()) == EXPECTED_EVENTS  # what the pipeline's marketing source sees


def test_the_published_body_decodes_into_the_expected_change_events():
    """Pure: the bytes the webhook publishes, through the pipeline's marketing decoder."""
    message = RawMessage("marketing", BATCH, {"received_at": "2024-05-29T16:26:40.000Z"})
    assert decode(message, DecoderConfig()) == EXPECTED_EVENTS
    assert decode(message, DecoderConfig(), "hubspot") == EXPECTED_EVENTS


OTHER = json.dumps([event(1, 901, "email", "mallory@example.com")]).encode()
NOT_ARRAY = b'{"eventId": 1, "subscriptionType": "contact.creation"}'
REFUSED = {
    # case: (body sent, headers for (url, body sent), status, error)
    "wrong secret": (BATCH, lambda url, b: signed(url, b, secret="not-the-secret"), 401, "does not match"),
    "replayed old timestamp": (BATCH, lambda url, b: signed(url, b, now_ms() - MAX_AGE_MS - 2000), 401,
                               "more than 5 minutes"),
    "tampered body": (OTHER, lambda url, b: signed(url, BATCH), 401, "does not match"),
    "signature of another URL": (BATCH, lambda url, b: signed(url + "?x=1", b), 401, "does not match"),
    "no signature": (BATCH, lambda url, b: {"Content-Type": "application/json"}, 401, "missing X-HubSpot-Signature-v3"),
    "garbled timestamp": (BATCH, lambda url, b: {**signed(url, b), "X-HubSpot-Request-Timestamp": "soon"}, 401,
                          "not epoch milliseconds"),
    "not an array": (NOT_ARRAY, signed, 400, "not an array"),
    "empty array": (b"[]", signed, 400, "empty array"),
    "not JSON": (b"[{'eventId': 1}]", signed, 400, "the body is not valid JSON"),
    "not UTF-8": ('[{"propertyValue": "Zoë"}]'.encode("utf-16"), signed, 400, "the body is not UTF-8"),
    "empty body": (b"", signed, 400, "the body is empty"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_refused_request_publishes_nothing(topic, api, case):
    body, headers, status, reason = REFUSED[case]
    with api(hubspot_client_secret=SECRET, hubspot_topic=topic.url) as base:
        response = post(base, body, headers(f"{base}{PATH}", body))
    assert response.status_code == status and reason in response.json()["detail"]
    assert set(response.json()) == {"error", "detail"}
    assert b"Doe" not in response.content and b"mallory" not in response.content  # no body echoed
    assert published(topic, api) == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_cap_is_413_and_publishes_nothing(topic, api, chunked):
    big = json.dumps([event(i, 901, "firstname", "x" * 100) for i in range(40)]).encode()
    assert len(big) > 4096
    with api(hubspot_client_secret=SECRET, hubspot_topic=topic.url, hubspot_max_body_bytes=4096) as base:
        headers = signed(f"{base}{PATH}", big)
        content = iter([big[i:i + 1000] for i in range(0, len(big), 1000)]) if chunked else big
        response = httpx.post(f"{base}{PATH}", content=content, headers=headers, timeout=30)
    assert response.status_code == 413 and "over 4096 bytes" in response.json()["detail"]
    assert published(topic, api) == []


def test_without_the_client_secret_the_route_is_503_and_publishes_nothing(topic, api):
    with api(hubspot_topic=topic.url) as base:
        response = post(base, BATCH, signed(f"{base}{PATH}", BATCH))
    assert response.status_code == 503 and "HUBSPOT_CLIENT_SECRET is not set" in response.json()["detail"]
    assert published(topic, api) == []


def test_without_a_topic_the_route_is_503(api):
    with api(hubspot_client_secret=SECRET) as base:
        response = post(base, BATCH, signed(f"{base}{PATH}", BATCH))
    assert response.status_code == 503 and "SINGLEVIEW_HUBSPOT_TOPIC is not set" in response.json()["detail"]


def test_a_publish_the_server_refuses_is_503_so_hubspot_retries(pubsub_host, kafka_addr, api):
    """A Pub/Sub topic that does not exist; a Kafka record over the producer's 1 MB default."""
    missing = f"pubsub://projects/{PROJECT}/topics/missing-{uuid.uuid4().hex[:8]}"
    with api(hubspot_client_secret=SECRET, hubspot_topic=missing) as base:
        response = post(base, BATCH, signed(f"{base}{PATH}", BATCH))
    assert response.status_code == 503 and "could not be published" in response.json()["detail"]
    assert response.headers["retry-after"]
    large = json.dumps([event(i, 901, "firstname", "x" * 60_000) for i in range(20)]).encode()
    kafka = KafkaTopic(kafka_addr, f"hubspot-{uuid.uuid4().hex[:10]}")
    try:
        with api(hubspot_client_secret=SECRET, hubspot_topic=kafka.url) as base:
            response = post(base, large, signed(f"{base}{PATH}", large))
        assert response.status_code == 503 and "could not be published" in response.json()["detail"]
        assert published(kafka, api) == []
    finally:
        kafka.close()


def test_the_signed_uri_is_decoded_as_hubspot_documents_and_can_be_the_public_url(pubsub_host, api):
    topic = PubSubTopic(f"hubspot-{uuid.uuid4().hex[:10]}")
    query = "?portalId=62515&tag=a%3Ab%2Cc&name=J%20D"
    public = "https://hooks.example.com/singleview/webhooks/hubspot"
    try:
        with api(hubspot_client_secret=SECRET, hubspot_topic=topic.url) as base:
            # HubSpot signs ...?portalId=62515&tag=a:b,c&name=J%20D: ':' and ',' decoded, the space kept escaped.
            assert post(base, BATCH, signed(f"{base}{PATH}{query}", BATCH), query).status_code == 204
            stamp = str(now_ms())
            as_sent = hmac.new(SECRET.encode(), f"POST{base}{PATH}{query}".encode() + BATCH + stamp.encode(),
                               hashlib.sha256).digest()
            undecoded = {"X-HubSpot-Request-Timestamp": stamp, "X-HubSpot-Signature-v3": base64.b64encode(as_sent).decode()}
            assert post(base, BATCH, undecoded, query).status_code == 401
        with api(hubspot_client_secret=SECRET, hubspot_topic=topic.url, hubspot_webhook_url=public) as base:
            assert post(base, BATCH, signed(f"{base}{PATH}", BATCH)).status_code == 401
            assert post(base, BATCH, signed(public, BATCH)).status_code == 204
        assert [m.data for m in published(topic, api)] == [BATCH, BATCH]
    finally:
        topic.close()


def test_v2_signatures_only_when_accepted(pubsub_host, api):
    topic = PubSubTopic(f"hubspot-{uuid.uuid4().hex[:10]}")
    try:
        for accept, status in ((False, 401), (True, 204)):
            with api(hubspot_client_secret=SECRET, hubspot_topic=topic.url, hubspot_accept_v2=accept) as base:
                headers = {"X-HubSpot-Signature-Version": "v2",
                           "X-HubSpot-Signature": sign_v2(SECRET, "POST", f"{base}{PATH}", BATCH)}
                assert post(base, BATCH, headers).status_code == status
                wrong = {**headers, "X-HubSpot-Signature": sign_v2(SECRET, "POST", f"{base}{PATH}", OTHER)}
                assert post(base, BATCH, wrong).status_code == 401
        assert [m.data for m in published(topic, api)] == [BATCH]
    finally:
        topic.close()


def test_the_webhook_needs_no_api_key_and_the_rest_of_the_api_still_does(pubsub_host, api):
    topic = PubSubTopic(f"hubspot-{uuid.uuid4().hex[:10]}")
    try:
        with api(hubspot_client_secret=SECRET, hubspot_topic=topic.url) as base:
            assert post(base, BATCH, signed(f"{base}{PATH}", BATCH)).status_code == 204
            assert httpx.get(f"{base}/customers-sv").status_code == 401
            assert httpx.get(f"{base}/customers-sv", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert [m.data for m in published(topic, api)] == [BATCH]
    finally:
        topic.close()


def test_a_topic_url_that_names_no_topic_refuses_to_start():
    from singleview.serving import ConfigError
    for url in ("pubsub://projects/p/subscriptions/s", "kafka://host-without-port/t", "http://example.com"):
        with pytest.raises(ConfigError, match="SINGLEVIEW_HUBSPOT_TOPIC"):
            create_app(Settings(dev=True, hubspot_topic=url))


def test_settings_from_env_and_the_secret_stays_out_of_the_repr():
    settings = Settings.from_env({"HUBSPOT_CLIENT_SECRET": " s3cr3t ", "SINGLEVIEW_HUBSPOT_TOPIC": "kafka://k:9092/hs",
                                  "SINGLEVIEW_HUBSPOT_MAX_BODY_BYTES": "1000", "SINGLEVIEW_HUBSPOT_ACCEPT_V2": "true"})
    assert (settings.hubspot_client_secret, settings.hubspot_topic) == ("s3cr3t", "kafka://k:9092/hs")
    assert (settings.hubspot_max_body_bytes, settings.hubspot_accept_v2) == (1000, True)
    assert "s3cr3t" not in repr(settings)
    assert Settings.from_env({}).hubspot_client_secret is None
