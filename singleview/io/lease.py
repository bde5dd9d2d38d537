"""One writer per database: the lease a pipeline holds while it writes (pymongo only).

The pipeline keeps each key's state in Beam (one worker per key, in order)
and writes documents whole by `_id`, with no compare-and-swap: FerretDB 1.24
would answer a filter on `{_id, _rev}` by scanning the collection. That is
only safe while one pipeline writes a database, so a run takes this lease
first, renews it while it runs, and a second run refuses to start (or waits,
`--lease_wait`) until it is released or has expired. Writers also check it
before they write (`LeaseGuard`), so a job that lost its lease stops writing
instead of racing the new holder.

The lease is one document in a collection of one document; the filters on
it that are not `{_id: v}` scan exactly that one document.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from pymongo.database import Database
from pymongo.errors import AutoReconnect, ConnectionFailure, DuplicateKeyError

log = logging.getLogger(__name__)

LEASES = "sv_lease"
LEASE_ID = "writer"
TTL = timedelta(seconds=60)


class LeaseHeld(RuntimeError):
    """Another pipeline writes this database."""


@dataclass(frozen=True)
class Holder:
    job: str
    mode: str  # what the holder runs: batch, streaming, rebuild


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _describe(doc: dict) -> str:
    return (f"job {doc['job']} ({doc.get('mode')}, since {doc.get('started_at'):%Y-%m-%d %H:%M:%S} UTC,"
            f" lease until {doc['expires_at']:%H:%M:%S} UTC)")


def try_acquire(db: Database, holder: Holder) -> dict | None:
    """Take the lease if it is free or expired; else the holder's document."""
    now = _now()
    mine = {"_id": LEASE_ID, "job": holder.job, "mode": holder.mode, "started_at": now, "expires_at": now + TTL}
    try:
        db[LEASES].insert_one(mine)
        return None
    except DuplicateKeyError:
        pass
    current = db[LEASES].find_one({"_id": LEASE_ID})
    if current is None:
        return try_acquire(db, holder)
    if current["job"] != holder.job and current["expires_at"].replace(tzinfo=timezone.utc) > now:
        return current
    taken = db[LEASES].replace_one({"_id": LEASE_ID, "job": current["job"], "expires_at": current["expires_at"]},
                                   mine)
    return None if taken.matched_count else try_acquire(db, holder)


def acquire(db: Database, holder: Holder, wait_seconds: float = 0) -> None:
    deadline = time.monotonic() + wait_seconds
    while True:
        current = try_acquire(db, holder)
        if current is None:
            return
        if time.monotonic() >= deadline:
            raise LeaseHeld(f"database {db.name!r} is being written by {_describe(current)}; stop that pipeline,"
                            " wait for it (--lease_wait SECONDS) or, if it died, for its lease to expire")
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def renew(db: Database, holder: Holder) -> bool:
    """Extend the lease; False when it is not ours any more."""
    result = db[LEASES].update_one({"_id": LEASE_ID, "job": holder.job}, {"$set": {"expires_at": _now() + TTL}})
    return result.matched_count == 1


def release(db: Database, holder: Holder) -> None:
    db[LEASES].delete_one({"_id": LEASE_ID, "job": holder.job})


class Renewal:
    """Renews the lease in the background while a run waits for its pipeline."""

    def __init__(self, db: Database, holder: Holder, every: float = TTL.total_seconds() / 4):
        self.db, self.holder, self.every = db, holder, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-renewal", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                renew(self.db, self.holder)
            except Exception:  # noqa: BLE001 - an outage: the writers' guard decides, renewal tries again
                pass

    def __enter__(self) -> "Renewal":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            release(self.db, self.holder)
        except (AutoReconnect, ConnectionFailure):
            log.warning("could not release the writer lease of %r; it expires in %s", self.db.name, TTL)


class LeaseLost(RuntimeError):
    """This job's lease was taken over: it must not write."""


class LeaseGuard:
    """Checked before each bulk write: the lease must still be this job's.

    A check reads the lease by `_id` at most every `every` seconds, and
    renews it when it is half gone, so a job whose launcher has exited keeps
    its lease while it writes.
    """

    def __init__(self, db: Database, holder: Holder, every: float = 2.0):
        self.db, self.holder, self.every = db, holder, every
        self._checked = 0.0

    def check(self) -> None:
        if time.monotonic() - self._checked < self.every:
            return
        current = self.db[LEASES].find_one({"_id": LEASE_ID})
        if current is None or current["job"] != self.holder.job:
            raise LeaseLost(f"the writer lease of {self.db.name!r} is no longer held by job {self.holder.job}"
                            + (f": {_describe(current)} holds it" if current else ""))
        if current["expires_at"].replace(tzinfo=timezone.utc) - _now() < TTL / 2:
            renew(self.db, self.holder)
        self._checked = time.monotonic()
