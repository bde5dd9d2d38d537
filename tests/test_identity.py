"""Identity across sources: HubSpot merges fold page views into the primary contact."""
from __future__ import annotations

import json

from singleview.pipelines.single_view import run


def webhook(event_id, kind, object_id, **extra):
    return {"eventId": event_id, "subscriptionId": 1, "portalId": 1, "occurredAt": 1_717_000_000_000 + event_id,
            "subscriptionType": kind, "attemptNumber": 0, "objectId": object_id, **extra}


def page_view(view_id, contact, minute, path):
    return {"objectType": "CONTACT", "objectId": str(contact), "eventType": "e_visited_page",
            "occurredAt": f"2024-06-01T10:{minute:02d}:00.000Z", "id": view_id,
            "properties": {"hs_url": f"https://shop.example.com{path}", "hs_title": path}}


def run_lines(tmp_path, mongo_uri, database_name, marketing, pageviews, tag):
    (tmp_path / f"m{tag}.jsonl").write_text("\n".join(json.dumps(m) for m in marketing) + "\n")
    (tmp_path / f"p{tag}.jsonl").write_text("\n".join(json.dumps(p) for p in pageviews) + "\n")
    run([f"--input=marketing={tmp_path / f'm{tag}.jsonl'}", f"--input=pageviews={tmp_path / f'p{tag}.jsonl'}",
         "--mongo_uri", mongo_uri, "--database", database_name])


CONTACTS = [
    [webhook(1, "contact.creation", 10), webhook(2, "contact.propertyChange", 10, propertyName="email",
                                                 propertyValue="Primary@Example.com")],
    [webhook(3, "contact.creation", 20), webhook(4, "contact.propertyChange", 20, propertyName="email",
                                                 propertyValue="other@example.com")],
]
MERGE = [webhook(5, "contact.merge", 10, primaryObjectId=10, mergedObjectIds=[10, 20], newObjectId=10)]
VIEWS = [page_view("v1", 10, 1, "/category/shoes/a"), page_view("v2", 20, 2, "/c/bags/b")]
LATE_VIEW = [page_view("v3", 20, 3, "/category/shoes/c")]


def categories(database, email):
    view = database["customer_sv"].find_one({"_id": email})
    return view and {c["category"]: c["views"] for c in view["marketing_preferences"]["viewed_categories"]}


def test_merge_folds_merged_contacts_page_views_into_the_primary(tmp_path, mongo_uri, database, database_name):
    run_lines(tmp_path, mongo_uri, database_name, CONTACTS, VIEWS, "a")
    assert categories(database, "primary@example.com") == {"shoes": 1}
    assert categories(database, "other@example.com") == {"bags": 1}

    run_lines(tmp_path, mongo_uri, database_name, MERGE, LATE_VIEW, "b")
    assert categories(database, "primary@example.com") == {"shoes": 2, "bags": 1}
    assert database["customer_sv"].find_one({"_id": "other@example.com"}) is None


def test_merge_in_one_run_equals_merge_over_two(tmp_path, mongo_uri, mongo_client, database, database_name):
    run_lines(tmp_path, mongo_uri, database_name, MERGE + CONTACTS, LATE_VIEW + VIEWS, "all")
    assert categories(database, "primary@example.com") == {"shoes": 2, "bags": 1}
    assert database["customer_sv"].count_documents({}) == 1
