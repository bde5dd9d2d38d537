"""The segment read model (serving/segments.py) and the change log it reads (io/changes.py).

Pure laws of the in-memory index, then the real API on the real server: its
answers equal MongoDB's own filter, and a view written (by the pipeline, or
by the change log and a Store write as WriteStagedFn does) before a query
starts is in that query's answer.
"""
from __future__ import annotations

import pickle
import random
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings as hsettings, strategies as st

from singleview.document import segment_fields
from singleview.io.changes import CHANGES, WRITERS, ChangeLog, drop_idle_writers, entry_id
from singleview.io.store import SINGLE_VIEWS, Store, Write
from singleview.serving import Settings, create_app
from singleview.serving.queries import Segment, combine, segment_filter
from singleview.serving.segments import SegmentIndex
from singleview.view import ViewChange

from .test_serving import AUTH, KEY, NOW, customer, order

UTC = timezone.utc
CATEGORIES = ["shoes", "hats", "bags"]


# --- the pure index -------------------------------------------------------------

def fields_strategy():
    moment = st.one_of(st.none(), st.integers(0, 60).map(lambda d: NOW - timedelta(days=d)))
    return st.fixed_dictionaries({
        "categories": st.lists(st.sampled_from(CATEGORIES), unique=True).map(sorted),
        "last_order_at": moment, "order_count": st.one_of(st.none(), st.integers(0, 4)),
        "email_opt_out": st.one_of(st.none(), st.booleans()), "updated_at": moment,
        "lifetime_value": st.dictionaries(st.sampled_from(["USD", "EUR"]),
                                          st.sampled_from(["0", "9.99", "10", "10.00", "100.5", "-3"]))})


changes_strategy = st.lists(st.tuples(st.sampled_from(["a@x", "b@x", "c@x", "d@x"]), st.integers(1, 6),
                                      st.one_of(st.none(), fields_strategy())), max_size=12)
segments_strategy = st.builds(
    Segment, viewed_category=st.one_of(st.none(), st.sampled_from(CATEGORIES)),
    no_purchase_days=st.one_of(st.none(), st.integers(0, 61)), min_orders=st.one_of(st.none(), st.integers(0, 5)),
    opted_in=st.one_of(st.none(), st.booleans()),
    updated_since=st.one_of(st.none(), st.integers(0, 61).map(lambda d: NOW - timedelta(days=d))),
    min_lifetime_value=st.one_of(st.none(), st.sampled_from(["0", "10", "10.0", "100.49"])),
    currency=st.just("USD"))


def reference(fields: dict, seg: Segment) -> bool:
    """The segment filter read literally, one customer at a time."""
    checks = []
    if seg.viewed_category is not None:
        checks.append(seg.viewed_category in fields["categories"])
    if seg.no_purchase_days is not None:
        last = fields["last_order_at"]
        checks.append(last is None or last < NOW - timedelta(days=seg.no_purchase_days))
    if seg.min_orders is not None:
        checks.append(fields["order_count"] is not None and fields["order_count"] >= seg.min_orders)
    if seg.opted_in is not None:
        checks.append(fields["email_opt_out"] is (not seg.opted_in))
    if seg.updated_since is not None:
        checks.append(fields["updated_at"] is not None and fields["updated_at"] >= seg.updated_since)
    if seg.min_lifetime_value is not None:
        value = fields["lifetime_value"].get("USD")
        checks.append(value is not None and not value.startswith("-")
                      and Decimal(value) >= Decimal(seg.min_lifetime_value))
    return all(checks)


@hsettings(max_examples=200, deadline=None)
@given(changes_strategy, st.randoms(use_true_random=False), segments_strategy)
def test_index_depends_on_the_set_of_changes_not_their_order(changes, rng, seg):
    first, second = SegmentIndex(), SegmentIndex()
    for email, rev, fields in changes:
        first.apply(email, rev, fields)
    shuffled = list(changes) * 2  # repeated deliveries too
    rng.shuffle(shuffled)
    for email, rev, fields in shuffled:
        second.apply(email, rev, fields)
    newest = {}
    for email, rev, fields in changes:
        if email not in newest or rev > newest[email][0] or (rev == newest[email][0] and fields is None):
            newest[email] = (rev, fields)
    # Equal revisions are equal views in the pipeline; here the law needs distinct ones.
    if len({(e, r) for e, r, _ in changes}) == len(changes):
        assert sorted(first.match(seg, NOW)) == sorted(second.match(seg, NOW)) == sorted(
            e for e, (_, f) in newest.items() if f is not None and reference(f, seg))
        assert set(first.by_category) >= {c for _, f in newest.values() if f for c in f["categories"]}


@hsettings(max_examples=200, deadline=None)
@given(changes_strategy, changes_strategy, segments_strategy, st.integers(0, 5))
def test_first_of_a_segment_is_the_start_of_its_sorted_matches(before, after, seg, count):
    index = SegmentIndex()
    for email, rev, fields in before:
        index.apply(email, rev, fields)
    index.first(seg, NOW, count)  # the walked sets are in order from here on, kept so by every change
    for email, rev, fields in after:
        index.apply(email, rev, fields)
    assert index.first(seg, NOW, count) == sorted(index.match(seg, NOW))[:count]
    assert index.everyone.order == sorted(index.rows)


@hsettings(max_examples=100, deadline=None)
@given(st.lists(fields_strategy(), min_size=1, max_size=15),
       st.lists(st.tuples(st.sampled_from(["_id", "updated_at", "stats.order_count", "stats.last_order_at"]),
                          st.sampled_from([1, -1])), max_size=2, unique_by=lambda k: k[0]),
       st.integers(0, 20))
def test_order_is_mongodb_order_nulls_first(all_fields, keys, first):
    index = SegmentIndex()
    for i, fields in enumerate(all_fields):
        index.apply(f"c{i:02d}@x", 1, fields)
    sort = keys if any(k == "_id" for k, _ in keys) else [*keys, ("_id", 1)]
    emails = index.match(Segment(), NOW)
    attribute = {"updated_at": "updated_at", "stats.order_count": "order_count", "stats.last_order_at": "last_order_at"}

    def key(email):
        parts = []
        for name, direction in sort:
            value = email if name == "_id" else getattr(index.rows[email], attribute[name])
            rank = (value is not None, value if value is not None else 0)
            if direction == 1:
                parts.append(rank)
            else:  # descending: negate what can be negated
                parts.append((not rank[0], -rank[1].timestamp() if isinstance(rank[1], datetime)
                              else -rank[1] if isinstance(rank[1], int) else tuple(-ord(c) for c in rank[1])))
        return parts

    assert index.ordered(emails, sort, first) == sorted(emails, key=key)[:first]


def test_segment_fields_of_a_document():
    doc = customer("jane@example.com", orders=[order("1", NOW - timedelta(days=3), "10.50")], ltv={"USD": "10.50"},
                   opt_out=False, categories=["shoes", "bags", "shoes"])
    assert segment_fields(doc) == {"categories": ["bags", "shoes"], "last_order_at": NOW - timedelta(days=3),
                                   "order_count": 1, "email_opt_out": False, "updated_at": NOW,
                                   "lifetime_value": {"USD": "10.50"}}
    assert segment_fields({"_id": "x"})["categories"] == []


# --- the change log on the real server -----------------------------------------------

def change(doc: dict | None, email: str | None = None) -> ViewChange:
    return ViewChange(email or doc["_id"], doc["_rev"] if doc else 99, doc, (), ())


def write_through(log: ChangeLog, store: Store, docs: list[dict], removed: tuple[str, ...] = ()) -> None:
    """What WriteStagedFn does with a batch: log, then write."""
    log.append(store.db, [change(d) for d in docs] + [change(None, e) for e in removed])
    store.write([Write(SINGLE_VIEWS, d["_id"], d) for d in docs] + [Write(SINGLE_VIEWS, e, None) for e in removed])


def test_change_log_copies_share_a_writer_and_heads_follow_entries(database):
    log = ChangeLog(keep=2)
    copy = pickle.loads(pickle.dumps(log))
    doc = customer("a@example.com", categories=["shoes"])
    log.append(database, [change(doc)])
    copy.append(database, [change(None, "b@example.com")])
    log.append(database, [change(doc)])
    heads = list(database[WRITERS].find({}))
    assert len(heads) == 1 and heads[0]["seq"] == 3 and heads[0]["first"] == 2
    writer = heads[0]["_id"]
    entries = {d["_id"]: d for d in database[CHANGES].find({})}
    assert sorted(entries) == [entry_id(writer, 2), entry_id(writer, 3)]  # the first is past retention
    assert entries[entry_id(writer, 2)]["changes"] == [{"email": "b@example.com", "rev": 99, "op": "remove",
                                                       "fields": None}]
    assert entries[entry_id(writer, 3)]["changes"][0]["fields"]["categories"] == ["shoes"]
    assert ChangeLog().writer().id != writer  # another log (another run) is another writer


def test_idle_writers_are_dropped_with_their_entries(database):
    busy, idle = ChangeLog(), ChangeLog()
    busy.append(database, [change(customer("a@example.com"))])
    for _ in range(3):
        idle.append(database, [change(customer("b@example.com"))])
    database[WRITERS].update_one({"_id": idle.writer().id}, {"$set": {"at": NOW - timedelta(days=2)}})
    assert drop_idle_writers(database) == [idle.writer().id]
    assert [d["_id"] for d in database[WRITERS].find({})] == [busy.writer().id]
    assert [d["writer"] for d in database[CHANGES].find({})] == [busy.writer().id]


# --- the API's answers ---------------------------------------------------------------

def generated_customers(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        orders = [order(f"{i}-{k}", NOW - timedelta(days=rng.randrange(90)), rng.choice(["9.99", "100", "250.5"]))
                  for k in range(rng.choice((0, 0, 1, 2, 3)))]
        docs.append(customer(f"c{i:04d}@example.com", orders=orders,
                             ltv={"USD": rng.choice(["0", "99.99", "100", "1000.50"])} if orders else None,
                             opt_out=rng.choice((None, False, True)),
                             categories=rng.sample(CATEGORIES, rng.randrange(0, 3)), crm=rng.random() < 0.7,
                             updated_at=NOW - timedelta(days=rng.randrange(60)), rev=rng.randrange(1, 9)))
    return docs


SEGMENT_QUERIES = [
    "viewed_category=shoes", "viewed_category=shoes&no_purchase_days=30", "viewed_category=nothing",
    "no_purchase_days=10", "min_orders=2", "opted_in=true", "opted_in=false&viewed_category=hats",
    "updated_since=" + (NOW - timedelta(days=20)).isoformat().replace("+00:00", "Z"),
    "min_lifetime_value=100&currency=USD", "min_lifetime_value=100.01&currency=usd&min_orders=1",
    "viewed_category=bags&opted_in=true&no_purchase_days=45&min_orders=1",
]


def mongo_answer(collection, query: str) -> list[str]:
    params = dict(p.split("=", 1) for p in query.split("&"))
    seg = Segment(viewed_category=params.get("viewed_category"),
                  no_purchase_days=int(params["no_purchase_days"]) if "no_purchase_days" in params else None,
                  min_orders=int(params["min_orders"]) if "min_orders" in params else None,
                  opted_in={"true": True, "false": False}.get(params.get("opted_in")),
                  updated_since=datetime.fromisoformat(params["updated_since"]) if "updated_since" in params else None,
                  min_lifetime_value=params.get("min_lifetime_value"), currency=params.get("currency"))
    return [d["_id"] for d in collection.find(combine(segment_filter(seg)), {"_id": 1}).sort("_id", 1)]


def api_answer(client, query: str, extra: str = "") -> list[str]:
    r = client.get(f"/customers-sv?{query}&limit=200{extra}", headers=AUTH)
    assert r.status_code == 200, r.text
    count = client.get(f"/customers-sv/count?{query}", headers=AUTH).json()["count"]
    ids = [d["_id"] for d in r.json()["items"]]
    assert count == len(ids)
    return ids


@pytest.fixture
def live_settings(mongo_uri, database_name):
    # The thread's own catch-up is slow here: what a query sees, it caught up itself.
    return Settings(mongo_uri=mongo_uri, database=database_name, api_keys=(KEY,), segments_refresh_seconds=300)


def test_answers_equal_mongodb_filter(live_settings, database):
    database[SINGLE_VIEWS].insert_many(generated_customers(150))
    with TestClient(create_app(live_settings)) as c:
        assert c.get("/readyz").json()["segments"] is True
        for query in SEGMENT_QUERIES:
            assert api_answer(c, query) == mongo_answer(database[SINGLE_VIEWS], query), query
        # sort, skip and projection over the read model, as MongoDB pages them
        r = c.get("/customers-sv?viewed_category=shoes&_s=-stats.order_count&_l=7&_sk=2&_p=email", headers=AUTH)
        direct = database[SINGLE_VIEWS].find({"marketing_preferences.viewed_categories.category": "shoes"},
                                             {"email": 1}).sort([("stats.order_count", -1), ("_id", 1)])
        assert r.json()["items"] == list(direct.skip(2).limit(7))
        lines = c.get("/customers-sv/export?viewed_category=hats&_s=-updated_at", headers=AUTH).text.splitlines()
        direct = database[SINGLE_VIEWS].find({"marketing_preferences.viewed_categories.category": "hats"},
                                             {"_id": 1}).sort([("updated_at", -1), ("_id", 1)])
        assert [line.split('"')[3] for line in lines] == [d["_id"] for d in direct]


def test_a_view_written_before_the_query_is_in_its_answer(live_settings, database):
    database[SINGLE_VIEWS].insert_many(generated_customers(40))
    store, log = Store(database), ChangeLog()
    with TestClient(create_app(live_settings)) as c:
        before = api_answer(c, "viewed_category=shoes")
        new = customer("zed@example.com", categories=["shoes"], opt_out=False)
        gone = before[0]
        write_through(log, store, [new], removed=(gone,))
        after = api_answer(c, "viewed_category=shoes")
        assert after == sorted(set(before) - {gone} | {"zed@example.com"})
        assert after == mongo_answer(database[SINGLE_VIEWS], "viewed_category=shoes")
        # a change of a segment field moves the customer between segments at once
        write_through(log, store, [dict(new, _rev=2, marketing_preferences={
            **new["marketing_preferences"], "viewed_categories": [], "email_opt_out": True})])
        assert "zed@example.com" not in api_answer(c, "viewed_category=shoes")
        assert "zed@example.com" in api_answer(c, "opted_in=false")
        # an older revision arriving late changes nothing
        log.append(database, [change(new)])
        assert "zed@example.com" not in api_answer(c, "viewed_category=shoes")


def test_views_written_by_the_pipeline_while_the_api_runs(live_settings, database, mongo_uri, tmp_path):
    from singleview.pipelines.single_view import run
    from singleview.samples import generate
    args = []
    for source, lines in generate(customers=25, seed=3).items():
        path = tmp_path / f"{source}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        args += ["--input", f"{source}={path}"]
    queries = ["viewed_category=shoes", "viewed_category=bags&min_orders=1", "no_purchase_days=900",
               "opted_in=true", "min_lifetime_value=50&currency=USD"]
    with TestClient(create_app(live_settings)) as c:
        assert all(api_answer(c, query) == [] for query in queries)  # loaded empty
        run(args + ["--mongo_uri", mongo_uri, "--database", database.name, "--runner", "DirectRunner"])
        answers = {query: api_answer(c, query) for query in queries}
    assert answers == {query: mongo_answer(database[SINGLE_VIEWS], query) for query in queries}
    assert answers["viewed_category=shoes"] and answers["opted_in=true"]  # not vacuous
    assert database[WRITERS].count_documents({}) >= 1


def test_retention_overtaking_the_reader_reloads(live_settings, database):
    database[SINGLE_VIEWS].insert_many(generated_customers(30))
    store, log = Store(database), ChangeLog(keep=1)
    with TestClient(create_app(live_settings)) as c:
        api_answer(c, "viewed_category=shoes")
        for i in range(3):  # the reader has not seen entry 1 when 2 deletes it
            write_through(log, store, [customer(f"new{i}@example.com", categories=["shoes"])])
        r = c.get("/customers-sv?viewed_category=shoes", headers=AUTH)
        assert r.status_code == 503 and r.json()["error"] == "unavailable" and r.headers["retry-after"]
        deadline = time.monotonic() + 30
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert api_answer(c, "viewed_category=shoes") == mongo_answer(database[SINGLE_VIEWS], "viewed_category=shoes")
        assert {"new0@example.com", "new2@example.com"} <= set(api_answer(c, "viewed_category=shoes"))


def test_ad_hoc_q_stays_a_mongodb_query(live_settings, database):
    database[SINGLE_VIEWS].insert_many(generated_customers(20))
    with TestClient(create_app(live_settings)) as c:
        # written behind the change log's back: only MongoDB sees it
        database[SINGLE_VIEWS].insert_one(customer("direct@example.com", categories=["shoes"]))
        def listed(query):
            r = c.get(f"/customers-sv?{query}&limit=200", headers=AUTH)
            assert r.status_code == 200, r.text
            return [d["_id"] for d in r.json()["items"]]

        assert "direct@example.com" not in listed("viewed_category=shoes")
        assert listed('viewed_category=shoes&_q={"email":{"$regex":"^d"}}') == ["direct@example.com"]
        # a sort the read model does not hold goes to MongoDB too
        assert "direct@example.com" in listed("viewed_category=shoes&_s=name")


def test_listed_documents_are_current_whether_cached_or_not(live_settings, database):
    database[SINGLE_VIEWS].insert_many(generated_customers(30))
    store, log = Store(database), ChangeLog()
    with TestClient(create_app(live_settings)) as c:
        first = c.get("/customers-sv?viewed_category=shoes", headers=AUTH).json()["items"]
        email = first[0]["_id"]
        doc = database[SINGLE_VIEWS].find_one({"_id": email})
        write_through(log, store, [dict(doc, name="Renamed", _rev=doc["_rev"] + 1)])
        again = c.get("/customers-sv?viewed_category=shoes", headers=AUTH).json()["items"]
        assert again[0]["name"] == "Renamed" and again[1:] == first[1:]
        # logged, not yet written (the pipeline's order): the stored document is shown, never a stale cache
        log.append(database, [change(dict(doc, name="Next", _rev=doc["_rev"] + 2))])
        assert c.get("/customers-sv?viewed_category=shoes", headers=AUTH).json()["items"][0]["name"] == "Renamed"
