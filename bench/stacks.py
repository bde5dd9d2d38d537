"""Where a run's time goes: py-spy samples of every thread, sorted into the pipeline's parts.

`Sampler` runs `py-spy record --idle` on this process (every thread, blocked
ones included) and `split` files each sample under the first frame, from the
leaf up, that belongs to a part we can name: a decoder, the fold, the view
merge, Beam, BSON, or a pymongo socket read (the time a thread waits for the
server). A thread blocked on a lock or a queue with nothing of ours above it
is idle (a pool waiting for work) and is left out.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

# (part, substrings of a frame's file or function); the first part matched from the leaf up wins.
PARTS = [
    ("server round trips", ("pymongo/network_layer.py", "pymongo/synchronous/network.py", "socket.py")),
    ("bson", ("bson/",)),
    ("pymongo (client)", ("pymongo/",)),
    ("decode", ("singleview/formats/", "singleview/transforms/decode.py", "singleview/io/files.py")),
    ("fold/projection", ("singleview/fold.py", "singleview/projection.py", "singleview/model.py")),
    ("view merge", ("singleview/view.py",)),
    ("documents", ("singleview/io/documents.py",)),
    ("pipeline stages", ("singleview/transforms/", "singleview/io/", "singleview/pipelines/")),
    ("beam: pickling/coders", ("apache_beam/coders/", "pickle", "dill/", "apache_beam/internal/")),
    ("beam: runner", ("apache_beam/",)),
]
BLOCKING = ("(threading.py", "get (queue.py", "_worker (concurrent", "select", "sleep", "poll")
WAITING_FOR_SERVER = "waiting for reads/writes"  # on the threads that do them: the server's time, seen from here
IDLE = "idle"
# The threads that do the pipeline's work (the streaming DirectRunner's is its one executor worker);
# the rest (pymongo's monitors, the lease's renewal, Beam's state samplers) sleep in C, which py-spy
# cannot tell from work, so they are not reported.
WORK_THREADS = ("MainThread", "staged-writes", "id-lookup", "ExecutorServiceWorker")


def is_work_thread(name: str) -> bool:
    return any(name == kind or (kind == "ExecutorServiceWorker" and kind in name) for kind in WORK_THREADS)


def part_of(frames: list[str]) -> str:
    """The part a stack (root first) belongs to."""
    if any("(stacks.py" in frame for frame in frames):
        return IDLE  # the sampler waiting for itself to attach
    leaf_blocks = bool(frames) and any(word in frames[-1] for word in BLOCKING)
    for frame in reversed(frames):
        for part, needles in PARTS:
            if any(needle in frame for needle in needles):
                if not leaf_blocks or part == "server round trips":
                    return part
                if part == "pipeline stages" and ("singleview/io/" in frame):
                    return WAITING_FOR_SERVER
                return IDLE if part == "pipeline stages" else part
    return IDLE if leaf_blocks else "other"


def parse_raw(text: str) -> dict[str, Counter]:
    """py-spy's raw format: `thread (id): name;frame;frame count` -> thread -> stack -> samples."""
    threads: dict[str, Counter] = defaultdict(Counter)
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        head, *frames = stack.split(";")
        name = re.sub(r"[-_]\d+", "", head.partition("): ")[2] or head)  # one row per pool
        threads[name][tuple(frames)] += int(count)
    return threads


def split(threads: dict[str, Counter]) -> dict[str, Counter]:
    """thread kind -> part -> samples, for the threads that do the pipeline's work."""
    parts: dict[str, Counter] = {}
    for name, stacks in threads.items():
        if not is_work_thread(name):
            continue
        parts[name] = Counter()
        for frames, n in stacks.items():
            parts[name][part_of(list(frames))] += n
    return parts


def top_functions(threads: dict[str, Counter], count: int = 15) -> list[tuple[str, int]]:
    """Leaf functions by samples, idle ones left out."""
    leaves = Counter()
    for name, stacks in threads.items():
        for frames, n in stacks.items() if is_work_thread(name) else ():
            if frames and part_of(list(frames)) != IDLE:
                leaves[frames[-1]] += n
    return leaves.most_common(count)


class Sampler:
    """`with Sampler(path, rate):` samples this process (or `pid`) with py-spy while the block runs."""

    def __init__(self, output: Path, rate: int = 50, pid: int | None = None):
        self.output, self.rate, self.pid = output, rate, pid or os.getpid()
        self.process: subprocess.Popen | None = None

    @staticmethod
    def available() -> str | None:
        here = Path(sys.executable).with_name("py-spy")
        return str(here) if here.exists() else shutil.which("py-spy")

    def __enter__(self):
        command = [self.available(), "record", "--pid", str(self.pid), "--idle", "--threads",
                   "--format", "raw", "--rate", str(self.rate), "--output", str(self.output)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # let it attach before the work starts
        return self

    def __exit__(self, *exc):
        self.process.send_signal(signal.SIGINT)
        _, errors = self.process.communicate(timeout=120)
        if self.process.returncode != 0 or not self.output.exists():
            raise RuntimeError(f"py-spy failed: {errors.decode(errors='replace')[-500:]}")

    def report(self, events: int) -> str:
        threads = parse_raw(self.output.read_text())
        return format_split(split(threads), top_functions(threads), events, self.rate)


def format_split(parts: dict[str, Counter], top: list[tuple[str, int]], events: int, rate: int) -> str:
    lines = [f"per-event cost by thread and part (µs per event of that thread's time; {rate} samples/s):"]
    for thread, counts in sorted(parts.items(), key=lambda item: -sum(item[1].values())):
        busy = sum(n for part, n in counts.items() if part != IDLE)
        if not busy:
            continue
        lines.append(f"  {thread}: {busy / rate:.1f} s not idle")
        for part, n in counts.most_common():
            if part != IDLE:
                lines.append(f"    {part:<28} {n / rate * 1e6 / events:8.1f} µs  {100 * n / busy:5.1f}%")
    lines.append("top leaf functions (samples of those threads, idle left out):")
    lines += [f"  {n:6d}  {frame}" for frame, n in top]
    return "\n".join(lines)
