"""bench/stacks.py: py-spy's raw samples sorted into the pipeline's parts (pure)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from stacks import IDLE, WAITING_FOR_SERVER, parse_raw, part_of, split, top_functions  # noqa: E402

RAW = """\
thread (11): MainThread;run (apache_beam/runners/a.py:1);decode (singleview/formats/hubspot.py:9);raw_decode (json/decoder.py:353) 7
thread (11): MainThread;run (apache_beam/runners/a.py:1);process (singleview/io/mongodb.py:90);result (concurrent/futures/_base.py:451);wait (threading.py:327) 5
thread (11): MainThread;run (apache_beam/runners/a.py:1);encode (apache_beam/coders/coders.py:914) 3
thread (12): staged-writes_0;_write (singleview/io/store.py:170);recv_into (pymongo/network_layer.py:443) 11
thread (13): staged-writes_1;_worker (concurrent/futures/thread.py:81);get (queue.py:171) 40
thread (14): pymongo_server_monitor_thread;_run (pymongo/periodic_executor.py:293) 99
"""


def test_parse_raw_groups_a_pools_threads_under_one_name():
    threads = parse_raw(RAW)
    assert set(threads) == {"MainThread", "staged-writes", "pymongo_server_monitor_thread"}
    assert sum(threads["staged-writes"].values()) == 51


def test_each_stack_goes_to_the_first_named_part_from_the_leaf_up():
    threads = parse_raw(RAW)
    parts = split(threads)
    assert parts["MainThread"] == {"decode": 7, WAITING_FOR_SERVER: 5, "beam: pickling/coders": 3}
    assert parts["staged-writes"] == {"server round trips": 11, IDLE: 40}
    assert "pymongo_server_monitor_thread" not in parts  # sleeps in C: not a work thread
    assert top_functions(threads)[0] == ("recv_into (pymongo/network_layer.py:443)", 11)


def test_a_blocked_leaf_under_beam_alone_is_beam_and_under_nothing_is_idle():
    assert part_of(["run (apache_beam/runners/a.py:1)", "join (threading.py:1)"]) == "beam: runner"
    assert part_of(["_bootstrap (threading.py:1)", "wait (threading.py:327)"]) == IDLE
    assert part_of(["f (mine.py:1)"]) == "other"
