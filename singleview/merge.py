"""The order-independent merge (pure: no Beam, no pymongo).

Two folds live here. `apply_events` folds change events into the state of
one entity (field-level last-writer-wins on versions, tombstones, erasure),
and `merge_contributions` folds per-entity contributions into one customer's
single view. Both are commutative, associative and idempotent, which is
what lets replays, retries, late data and concurrent workers converge.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from singleview.model import DELETE, ERASE, MERGE, RESTORE, UPSERT, ChangeEvent, normalise_email

APPLIED = "applied"
SUPERSEDED = "superseded"

# Where each source keeps the customer's email, when it has one.
EMAIL_FIELD = {"crm": "email", "orders": "customer_email", "marketing": "email"}
# Sources stored under a parent's document: source -> (parent source, map name).
CHILD_OF = {"order_items": ("orders", "items"), "pageviews": ("marketing", "views")}


def order_key(event: ChangeEvent) -> str:
    """The event's version with a deterministic tie-breaker appended."""
    digest = hashlib.blake2b(event.fingerprint().encode(), digest_size=8).hexdigest()
    return f"{event.version}#{digest}"


def new_entity() -> dict:
    return {"fields": {}, "versions": {}, "version": "", "alive": False, "life": "", "erased": ""}


def _leaves(fields: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for name, value in fields.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{path}/")
        else:
            yield path, value


def _set_path(image: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split("/")
    for name in parents:
        child = image.get(name)
        if not isinstance(child, dict):
            child = image[name] = {}
        image = child
    image[leaf] = value


def _get_path(image: Mapping, path: str) -> Any:
    for name in path.split("/"):
        image = image.get(name) if isinstance(image, dict) else None
    return image


def apply_event(entity: dict, event: ChangeEvent) -> str:
    """Fold one event into an entity state in place; say whether it applied."""
    key = order_key(event)
    if entity["erased"] and key <= entity["erased"]:
        return SUPERSEDED
    changed = False
    if event.op == ERASE:
        kept = {path: v for path, v in entity["versions"].items() if v > key}
        image: dict = {}
        for path in kept:
            _set_path(image, path, _get_path(entity["fields"], path))
        entity.update(fields=image, versions=kept, erased=key)
        if key > entity["life"]:
            entity["life"], entity["alive"] = key, False
        changed = True
    elif event.op == UPSERT:
        updates = list(_leaves(event.fields))
        updates += [(path.replace(".", "/"), None) for path in event.nulled]
        for path, value in updates:
            if key > entity["versions"].get(path, ""):
                entity["versions"][path] = key
                _set_path(entity["fields"], path, value)
                changed = True
        if key > entity["life"]:
            entity["life"], entity["alive"] = key, True
            changed = True
    elif event.op in (DELETE, RESTORE, MERGE):
        if key > entity["life"]:
            entity["life"], entity["alive"] = key, event.op == RESTORE
            if event.op == MERGE:
                entity["versions"]["merged_into"] = key
                entity["fields"]["merged_into"] = event.parent_id
            changed = True
    else:
        raise ValueError(f"unknown op {event.op!r}")
    if changed:
        entity["version"] = max(entity["version"], key)
        return APPLIED
    return SUPERSEDED


def entity_email(source: str, entity: Mapping | None) -> str | None:
    """The normalised email a live entity belongs to, if it has one."""
    if not entity or not entity.get("alive"):
        return None
    return normalise_email(entity["fields"].get(EMAIL_FIELD[source]))


@dataclass(frozen=True)
class Contribution:
    """What one entity (with its children) gives one customer's single view.

    `rev` is (parent document revision, child document revision): the
    parent decides the email, so it is compared first, which makes a
    retraction issued by an email change win over any assertion that read
    the parent before the change.
    """

    source: str
    entity_id: str
    email: str
    rev: tuple[int, int]
    live: bool
    data: Mapping[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.source}:{self.entity_id}"

    def to_doc(self) -> dict:
        return {"source": self.source, "id": self.entity_id, "rev": list(self.rev),
                "live": self.live, "data": dict(self.data) if self.live and self.data else None}

    @classmethod
    def from_doc(cls, email: str, doc: Mapping) -> "Contribution":
        return cls(doc["source"], doc["id"], email, tuple(doc["rev"]), doc["live"], doc.get("data"))


def newer(a: Contribution, b: Contribution) -> Contribution:
    """The later of two observations of one contribution (ties: retraction wins)."""
    if a.rev != b.rev:
        return a if a.rev > b.rev else b
    return b if not b.live else a


def merge_contributions(stored: Iterable[Contribution], incoming: Iterable[Contribution]) -> list[Contribution]:
    """Keep the newest observation per (source, entity), in a total order."""
    best: dict[str, Contribution] = {}
    for contribution in (*stored, *incoming):
        current = best.get(contribution.key)
        best[contribution.key] = contribution if current is None else newer(current, contribution)
    return [best[k] for k in sorted(best)]
