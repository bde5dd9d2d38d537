"""The writer lease against the real server: one holder at a time, an expired lease can be taken
over, and a job whose lease was taken writes nothing more."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from singleview.io.lease import LEASE_ID, LEASES, Holder, LeaseGuard, LeaseHeld, LeaseLost, acquire, release, renew


def expire(database) -> None:
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    database[LEASES].update_one({"_id": LEASE_ID}, {"$set": {"expires_at": past}})


def test_one_holder_at_a_time_until_it_releases(database):
    first, second = Holder("first", "batch"), Holder("second", "streaming")
    acquire(database, first)
    with pytest.raises(LeaseHeld, match="job first"):
        acquire(database, second)
    release(database, first)
    acquire(database, second)
    assert database[LEASES].find_one({"_id": LEASE_ID})["job"] == "second"


def test_an_expired_lease_is_taken_over_and_its_old_holder_stops_writing(database):
    dead, alive = Holder("dead", "streaming"), Holder("alive", "batch")
    acquire(database, dead)
    guard = LeaseGuard(database, dead, every=0)
    guard.check()
    expire(database)
    acquire(database, alive)
    with pytest.raises(LeaseLost, match="job alive"):
        guard.check()
    assert not renew(database, dead)
    LeaseGuard(database, alive, every=0).check()
