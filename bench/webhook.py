"""Webhook latency: POST /webhooks/hubspot (verify, publish, wait for the ack)
against publishing the same body straight to the same topic, same run.

Starts the API (`python -m singleview.serving`) in a subprocess on a free
127.0.0.1 port with a fresh topic on the local Pub/Sub server or Kafka broker
(the servers must be up: `scripts/pubsub.sh start`, `scripts/kafka.sh start`),
then sends --requests signed batches of --events events one after another
(closed loop: HubSpot waits for each answer), and as many direct publishes
through `singleview.io.topics`. The difference is the webhook's own cost:
HTTP, signature, JSON check, the thread hop.

    .venv/bin/python bench/webhook.py --backend pubsub --requests 300 --events 100
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from singleview.io.topics import Message, open_topic  # noqa: E402
from singleview.serving.hubspot_signature import sign_v3  # noqa: E402

SECRET = "bench-webhook-secret"
PROJECT = "singleview-bench"


def batch(events: int, seed: int) -> bytes:
    return json.dumps([{"eventId": seed * 1000 + i, "subscriptionId": 1, "portalId": 62515, "appId": 1,
                        "occurredAt": 1717000000000 + i, "subscriptionType": "contact.propertyChange",
                        "attemptNumber": 0, "objectId": 100000 + i, "changeSource": "CRM",
                        "propertyName": "email", "propertyValue": f"customer{i}@example.com"}
                       for i in range(events)]).encode()


def topic_url(backend: str) -> str:
    name = f"bench-webhook-{uuid.uuid4().hex[:8]}"
    if backend == "kafka":
        return f"kafka://{os.environ.get('SINGLEVIEW_KAFKA_ADDR', '127.0.0.1:9092')}/{name}"
    from singleview.io.pubsub import ensure_topic_and_subscription
    ensure_topic_and_subscription(PROJECT, name)
    return f"pubsub://projects/{PROJECT}/topics/{name}"


def start_api(url: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, HUBSPOT_CLIENT_SECRET=SECRET, SINGLEVIEW_HUBSPOT_TOPIC=url, SINGLEVIEW_DEV="1")
    server = subprocess.Popen([sys.executable, "-m", "singleview.serving", "--port", str(port), "--log-level",
                               "warning"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the API did not start")


def timed(calls) -> list[float]:
    out = []
    for call in calls:
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def summary(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=100)
    return f"p50 {q[49]:.1f} ms, p95 {q[94]:.1f} ms, mean {statistics.fmean(ms):.1f} ms"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", choices=["pubsub", "kafka"], default="pubsub")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--events", type=int, default=100)
    args = p.parse_args()
    url = topic_url(args.backend)
    bodies = [batch(args.events, i) for i in range(args.requests)]
    server, base = start_api(url)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            def send(body: bytes):
                stamp = str(time.time_ns() // 1_000_000)
                headers = {"X-HubSpot-Request-Timestamp": stamp,
                           "X-HubSpot-Signature-v3": sign_v3(SECRET, "POST", f"{base}/webhooks/hubspot", body, stamp)}
                assert client.post("/webhooks/hubspot", content=body, headers=headers).status_code == 204
            send(bodies[0])  # warm-up: connections to the API and the topic
            webhook = timed(lambda b=b: send(b) for b in bodies)
        topic = open_topic(url)
        topic.publish([Message(bodies[0])])
        direct = timed(lambda b=b: topic.publish([Message(b, attributes={"received_at": "x"})]) for b in bodies)
        topic.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{args.backend}, {args.requests} requests of {args.events} events ({len(bodies[0])} bytes)")
    print(f"  webhook: {summary(webhook)}")
    print(f"  direct:  {summary(direct)}")
    print(f"  webhook/direct p50 x{statistics.median(webhook) / statistics.median(direct):.2f}")


if __name__ == "__main__":
    main()
