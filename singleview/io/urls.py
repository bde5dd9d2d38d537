"""Pub/Sub and Kafka locations by URL, parsed without Beam or a client library:
the serving app checks its topic at start-up and must not import Beam (docs/design.md section 1)."""
from __future__ import annotations

import re

_PUBSUB_PATH = re.compile(r"^projects/([^/]+)/(subscriptions|topics)/([^/]+)$")
_KAFKA_URL = re.compile(r"^kafka://([^/]+)/([^/]+)$")


def parse_pubsub_url(url: str) -> tuple[str, str]:
    """`pubsub://projects/P/subscriptions/S` -> ("subscription", "projects/P/subscriptions/S")."""
    path = url.removeprefix("pubsub://")
    match = _PUBSUB_PATH.match(path)
    if not url.startswith("pubsub://") or not match:
        raise ValueError(f"expected pubsub://projects/P/subscriptions/S or pubsub://projects/P/topics/T, got {url!r}")
    return match.group(2)[:-1], path


def parse_kafka_url(url: str) -> tuple[str, str]:
    """`kafka://HOST:PORT[,HOST:PORT...]/TOPIC` -> (bootstrap servers, topic)."""
    match = _KAFKA_URL.match(url)
    if not match or any(not server.rpartition(":")[2].isdigit() for server in match.group(1).split(",")):
        raise ValueError(f"expected kafka://HOST:PORT/TOPIC, got {url!r}")
    return match.group(1), match.group(2)


def check_topic_url(url: str) -> str:
    """The URL itself if it names a topic one can publish to, else ValueError saying what is expected."""
    if url.startswith("kafka://"):
        parse_kafka_url(url)
        return url
    if url.startswith("pubsub://") and parse_pubsub_url(url)[0] == "topic":
        return url
    raise ValueError(f"expected pubsub://projects/P/topics/T or kafka://HOST:PORT/TOPIC, got {url!r}")
