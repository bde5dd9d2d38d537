"""The named segments, answered from memory: every customer's segment fields, kept fresh from the change log.

FerretDB 1.24 answers a segment filter by decoding and testing every
document (45 s over 100k customers). Here the API reads the segment fields
of every customer once at start-up (one sequential read of customer_sv with
a projection, the change log's heads recorded before it), then, before each
segment query, applies the log's entries written since (io/changes.py, by
exact `_id`). The pipeline logs a batch before it writes its views, so the
answer is exact for every view stored before the query started. While the
copy is loading, or reloading because the log's retention overtook it,
segment queries answer 503 and /readyz says not ready.
"""
from __future__ import annotations

import bisect
import logging
import re
import threading
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Callable

from pymongo.collection import Collection
from pymongo.errors import PyMongoError

from ..document import SEGMENT_PROJECTION, SegmentFields, segment_fields
from ..io.changes import IDLE, WRITE, ChangeFeed
from ..io.store import IdReader, is_ferretdb
from .errors import ApiError
from .queries import HIDDEN, Segment

log = logging.getLogger("singleview.serving")
PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
# Sort keys answered from memory (after them, `_id`), and the row attribute each reads.
SORTABLE = {"_id": None, "email": None, "updated_at": "updated_at", "stats.order_count": "order_count",
            "stats.last_order_at": "last_order_at"}
# A write logged just before the start-up read may land after the read passed its
# document: entries logged this long before the read are applied again.
LOAD_OVERLAP = timedelta(minutes=5)
WHOLE = {HIDDEN: 0}  # the projection of a list without `_p`: whole documents, which are cached


@dataclass(slots=True)
class Row:
    categories: tuple[str, ...]
    last_order_at: datetime | None
    order_count: int | None
    email_opt_out: bool | None
    updated_at: datetime | None
    lifetime_value: dict[str, str]


def at_least(value: str | None, minimum: Decimal) -> bool:
    """What the MongoDB clause (queries.lifetime_value_clause) selects: plain non-negative decimals >= minimum."""
    return value is not None and PLAIN_DECIMAL.fullmatch(value) is not None and Decimal(value) >= minimum


def row_test(seg: Segment, now: datetime) -> Callable[[Row], bool] | None:
    """The segment's filters that no in-memory index serves, as one test of a row (None: no such filter)."""
    tests = []
    if seg.no_purchase_days is not None:
        cutoff = seg.cutoff(now)
        tests.append(lambda r: r.last_order_at is None or r.last_order_at < cutoff)
    if seg.min_orders is not None:
        fewest = seg.min_orders
        tests.append(lambda r: r.order_count is not None and r.order_count >= fewest)
    if seg.updated_since is not None:
        since = seg.updated_since
        tests.append(lambda r: r.updated_at is not None and r.updated_at >= since)
    if seg.lifetime_value is not None:
        currency, minimum = seg.lifetime_value
        tests.append(lambda r: at_least(r.lifetime_value.get(currency), minimum))
    if len(tests) < 2:
        return tests[0] if tests else None
    return lambda r: all(test(r) for test in tests)


class Members:
    """Emails, as a set and, once asked for, in `_id` order (kept up to date from then on)."""

    __slots__ = ("set", "_order")

    def __init__(self) -> None:
        self.set: set[str] = set()
        self._order: list[str] | None = None

    def __len__(self) -> int:
        return len(self.set)

    def add(self, email: str) -> None:
        if email not in self.set:
            self.set.add(email)
            if self._order is not None:
                bisect.insort(self._order, email)

    def discard(self, email: str) -> None:
        if email in self.set:
            self.set.remove(email)
            if self._order is not None:
                del self._order[bisect.bisect_left(self._order, email)]

    @property
    def order(self) -> list[str]:
        if self._order is None:
            self._order = sorted(self.set)
        return self._order


NOBODY = Members()


class SegmentIndex:
    """Every customer's segment fields by email, indexed by viewed category and by opt-out (pure)."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.revs: dict[str, int] = {}  # newest revision seen per email, removed ones included
        self.everyone = Members()
        self.by_category: dict[str, Members] = defaultdict(Members)
        self.by_opt_out: dict[bool, Members] = {True: Members(), False: Members()}

    def apply(self, email: str, rev: int, fields: SegmentFields | None) -> None:
        """A view written (`fields`) or removed (None) at `rev`; an older revision changes nothing."""
        if rev < self.revs.get(email, rev):
            return
        self.revs[email] = rev
        old = self.rows.pop(email, None)
        if old is not None:
            self.everyone.discard(email)
            for category in old.categories:
                self.by_category[category].discard(email)
            if old.email_opt_out is not None:
                self.by_opt_out[old.email_opt_out].discard(email)
        if fields is None:
            return
        row = Row(tuple(fields["categories"]), fields["last_order_at"], fields["order_count"],
                  fields["email_opt_out"], fields["updated_at"], fields["lifetime_value"])
        self.rows[email] = row
        self.everyone.add(email)
        for category in row.categories:
            self.by_category[category].add(email)
        if row.email_opt_out is not None:
            self.by_opt_out[bool(row.email_opt_out)].add(email)

    def apply_entry(self, entry: dict) -> None:
        for change in entry["changes"]:
            self.apply(change["email"], change["rev"], change["fields"] if change["op"] == WRITE else None)

    def _indexed(self, seg: Segment) -> list[Members]:
        """The indexed sets the segment's emails are in, smallest first."""
        found = []
        if seg.viewed_category is not None:
            found.append(self.by_category.get(seg.viewed_category, NOBODY))
        if seg.opted_in is not None:
            found.append(self.by_opt_out[not seg.opted_in])
        return sorted(found, key=len) or [self.everyone]

    def match(self, seg: Segment, now: datetime) -> list[str]:
        """The emails in the segment as of `now`, in no particular order."""
        lead, *others = self._indexed(seg)
        candidates = lead.set.intersection(*(m.set for m in others))
        test, rows = row_test(seg, now), self.rows
        if test is None:
            return list(candidates)
        return [e for e in candidates if test(rows[e])]

    def first(self, seg: Segment, now: datetime, count: int) -> list[str]:
        """The segment's first `count` emails in `_id` order: a walk of the smallest indexed set
        in order that stops there, so a list costs little however many match."""
        lead, *others = self._indexed(seg)
        sets = [m.set for m in others]
        test, rows = row_test(seg, now), self.rows
        found: list[str] = []
        for email in lead.order:
            if len(found) == count:
                break
            if all(email in s for s in sets) and (test is None or test(rows[email])):
                found.append(email)
        return found

    def ordered(self, emails: list[str], sort: list[tuple[str, int]], first: int | None = None) -> list[str]:
        """`emails` in MongoDB's order for `sort` (null and missing first), the first `first` of them."""
        ordered = list(emails)
        for name, direction in reversed(sort):  # stable passes, the last key first
            ordered.sort(key=self._sort_key(SORTABLE[name]), reverse=direction == -1)
        return ordered if first is None else ordered[:first]

    def _sort_key(self, attribute: str | None):
        if attribute is None:
            return None
        rows = self.rows
        return lambda e: (getattr(rows[e], attribute) is not None, getattr(rows[e], attribute))


def sortable(sort: list[tuple[str, int]]) -> bool:
    return all(name in SORTABLE for name, _ in sort)


class DocumentCache:
    """Recently listed whole documents, least recently used out first."""

    def __init__(self, size: int = 5000):
        self.size = size
        self.docs: OrderedDict[str, dict] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, revs: dict[str, int | None]) -> dict[str, dict]:
        """The cached documents at these revisions."""
        with self.lock:
            found = {e: doc for e, rev in revs.items() if (doc := self.docs.get(e)) is not None and doc["_rev"] == rev}
            for email in found:
                self.docs.move_to_end(email)
        return found

    def put(self, docs: dict[str, dict], revs: dict[str, int | None]) -> dict[str, dict]:
        """Keep those read at the newest revision; returns `docs`."""
        with self.lock:
            for email, doc in docs.items():
                rev = revs.get(email)
                if rev is not None and doc.get("_rev") == rev:
                    self.docs[email] = doc
                    self.docs.move_to_end(email)
            while len(self.docs) > self.size:
                self.docs.popitem(last=False)
        return docs


class Gap(Exception):
    """The log no longer holds an entry the copy needs: it must be read again."""


def not_ready() -> ApiError:
    return ApiError(503, "unavailable", "the segment read model is loading; retry in a few seconds",
                    headers={"Retry-After": "5"})


class SegmentReadModel:
    """The SegmentIndex of a customer_sv collection, loaded by a thread of its own and kept up to date.

    The thread loads the copy (again after a Gap) and catches up every
    `refresh_seconds`, so a query has little to apply; each query catches
    up first all the same. One lock: a query sees the copy as of its start.
    """

    def __init__(self, collection: Collection, refresh_seconds: float = 5.0):
        self.collection, self.refresh_seconds = collection, refresh_seconds
        self.index: SegmentIndex | None = None
        self.cursors: dict[str, int] = {}
        self.caught_up_at = datetime.min.replace(tzinfo=timezone.utc)
        self.load_seconds: float | None = None
        self.feed: ChangeFeed | None = None
        self.cache = DocumentCache()
        self.lock = threading.Lock()
        self.tried = threading.Event()  # the first load was attempted
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="segment-read-model", daemon=True)

    @property
    def ready(self) -> bool:
        return self.index is not None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        if self.feed is not None:
            self.feed.ids.close()

    def select(self, seg: Segment, sort: list[tuple[str, int]] | None = None, first: int | None = None) -> list[str]:
        """The segment's emails as of now, in `sort` order (unordered without one)."""
        with self.lock:
            if self.index is None or not self._fresh():
                raise not_ready()
            now = datetime.now(timezone.utc)
            if sort == [("_id", 1)] and first is not None:
                return self.index.first(seg, now, first)
            emails = self.index.match(seg, now)
            return emails if sort is None else self.index.ordered(emails, sort, first)

    def documents(self, emails: list[str], projection: dict) -> list[dict]:
        """These customers' documents in this order (one whose write was logged but has not landed
        yet is left out). Whole documents come from the cache while their `_rev` is the newest the
        log told of, which is then what customer_sv holds; the rest are read by `_id`."""
        if projection != WHOLE:
            found = self.feed.ids.find(self.collection, emails, projection)
            return [found[e] for e in emails if e in found]
        with self.lock:
            revs = {e: self.index.revs.get(e) for e in emails} if self.index is not None else {}
        found = self.cache.get(revs)
        found.update(self.cache.put(self.feed.ids.find(self.collection, [e for e in emails if e not in found],
                                                       projection), revs))
        return [found[e] for e in emails if e in found]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.index is None:
                    self._load()
                else:
                    with self.lock:
                        self._fresh()
            except PyMongoError as exc:
                log.warning("segment read model: MongoDB unavailable (%s); retrying", type(exc).__name__)
            except Exception:  # a bad entry must not end the thread: retried, and logged each time
                log.exception("segment read model: catching up failed; retrying")
            finally:
                self.tried.set()
            self._wake.wait(self.refresh_seconds)
            self._wake.clear()

    def _load(self) -> None:
        if self.feed is None:
            database = self.collection.database
            self.feed = ChangeFeed(database, IdReader(database, exact_only=is_ferretdb(database)))
        started, clock = datetime.now(timezone.utc), time.perf_counter()
        heads = self.feed.heads()
        index = SegmentIndex()
        for doc in self.collection.find({}, SEGMENT_PROJECTION, batch_size=2000):
            index.apply(doc["_id"], doc.get("_rev") or 0, segment_fields(doc))
        for writer, head in heads.items():
            for entry in self.feed.since(writer, head["seq"], started - LOAD_OVERLAP):
                index.apply_entry(entry)
        with self.lock:
            self.index, self.cursors, self.caught_up_at = index, {w: h["seq"] for w, h in heads.items()}, started
            if not self._fresh():
                return
        self.load_seconds = time.perf_counter() - clock
        log.info("segment read model: %d customers loaded in %.1f s", len(index.rows), self.load_seconds)

    def _fresh(self) -> bool:
        """Caught up (under the lock), or False with the copy dropped for a reload."""
        try:
            self._catch_up()
            return True
        except Gap as gap:
            log.warning("segment read model: an entry of writer %s is gone; reloading", gap)
            self.index = None
            self._wake.set()
            return False

    def _catch_up(self) -> None:
        """Apply the entries logged since the last catch-up (under the lock)."""
        now = datetime.now(timezone.utc)
        heads = self.feed.heads()
        for writer in [w for w in self.cursors if w not in heads]:
            # Dropped for being idle (io.changes.drop_idle_writers): it wrote nothing since the
            # last catch-up unless that is longer ago than the idle time.
            if now - self.caught_up_at > IDLE / 2:
                raise Gap(writer)
            del self.cursors[writer]
        for writer, head in heads.items():
            cursor = self.cursors.get(writer, 0)
            if head["seq"] <= cursor:
                continue
            entries = self.feed.entries(writer, cursor, head["seq"])
            if entries is None:
                raise Gap(writer)
            for entry in entries:
                self.index.apply_entry(entry)
            self.cursors[writer] = head["seq"]
        self.caught_up_at = now
