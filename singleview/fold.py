"""Folding change events into the state of one entity (pure: no Beam, no pymongo).

Field-level last writer wins on versions, with tombstones and erasure. The
fold is commutative, associative and idempotent, which is what lets replays,
retries, late data and concurrent workers converge.
"""
from __future__ import annotations

import json
from operator import itemgetter
from typing import Any, Iterable, Mapping

from singleview.model import DELETE, ERASE, MERGE, NO_VERSION, OPS, RESTORE, UPSERT, ChangeEvent, Version, normalise_email
from singleview.sources import SOURCES

APPLIED = "applied"
SUPERSEDED = "superseded"

# Between life-cycle changes at one version, the later op of model.OPS wins.
LIFE_RANK = {op: rank for rank, op in enumerate(OPS, 1)}
_UPSERT_RANK = LIFE_RANK[UPSERT]
_ALIVE_AFTER = frozenset((LIFE_RANK[UPSERT], LIFE_RANK[RESTORE]))

Life = tuple[Version, int]


def life_key(event: ChangeEvent) -> Life:
    return event.version, LIFE_RANK[event.op]


def is_alive(entity: Mapping) -> bool:
    """Whether the entity's newest life-cycle event (its `life`) left it alive: an upsert or a restore."""
    return entity["life"][1] in _ALIVE_AFTER


def in_fold_order(events: Iterable[ChangeEvent]) -> list[ChangeEvent]:
    """A batch in one deterministic order, oldest first.

    The fold's result does not depend on order; this order keeps it on its
    fast path and gives a retried batch the same applied/superseded counts.
    The fingerprint, the costly part, is computed only when keys tie.
    """
    keyed = [(life_key(e), e) for e in events]
    if len({key for key, _ in keyed}) < len(keyed):
        return sorted(events, key=lambda e: (life_key(e), e.fingerprint()))
    return [e for _, e in sorted(keyed, key=itemgetter(0))]


_NEW_ENTITY = {"fields": None, "versions": None, "version": NO_VERSION, "life": (NO_VERSION, 0), "erased": None}


def new_entity() -> dict:
    """An entity nothing was folded into.

    `life` is the `life_key` of its newest life-cycle event, which also
    says whether it is alive (`is_alive`); `erased`, that of its newest
    erasure, if any. `versions` maps a path to the
    newest version written there. It is None (or, in documents written
    before, empty) while every leaf of `fields` was written at the entity's
    `version` and nothing else is remembered: a new entity's first upsert,
    CDC's usual case, then writes no version per field.
    """
    entity = _NEW_ENTITY.copy()
    entity["fields"] = {}
    return entity


def _leaf_versions(image: Mapping[str, Any], version: Version, versions: dict, prefix: str = "") -> dict:
    """Put every leaf path of the image into `versions` at one version."""
    for name, value in image.items():
        if type(value) is dict and value:
            _leaf_versions(value, version, versions, f"{prefix}{name}/")
        else:
            versions[prefix + name] = version
    return versions


def _expand(entity: dict) -> dict:
    """Give every leaf its own version, the form the per-leaf rules read."""
    versions = entity["versions"]
    if not versions:
        versions = entity["versions"] = _leaf_versions(entity["fields"], entity["version"], {})
    return versions


def _compact(entity: dict) -> None:
    """Drop the versions again when they all equal the entity's (see `new_entity`)."""
    versions, version = entity["versions"], entity["version"]
    if (not versions or all(v == version for v in versions.values())
            and len(versions) == len(_leaf_versions(entity["fields"], version, {}))):
        entity["versions"] = None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def _set_path(image: dict, path: str, value: Any) -> None:
    """Nested dicts are copied, never changed in place: the image may share them with events."""
    *parents, leaf = path.split("/")
    for name in parents:
        child = image.get(name)
        child = image[name] = dict(child) if isinstance(child, dict) else {}
        image = child
    image[leaf] = value


def _get_path(image: Mapping, path: str) -> Any:
    for name in path.split("/"):
        image = image.get(name) if isinstance(image, dict) else None
    return image


def _hidden_by_ancestor(versions: Mapping[str, Version], path: str, version: Version) -> bool:
    """A whole value written later at an ancestor path hides this leaf."""
    cut = path.find("/")
    while cut != -1:
        ancestor = versions.get(path[:cut])
        if ancestor is not None and ancestor > version:
            return True
        cut = path.find("/", cut + 1)
    return False


def _assign(entity: dict, path: str, value: Any, version: Version) -> bool:
    """Last writer wins on one leaf, as if all writes were replayed in version order.

    `versions` keeps the newest version seen per path, also for writes that
    a later whole value at an ancestor hides. At equal versions the larger
    value wins and a nested leaf beats its ancestor, so any arrival order
    gives the same state.
    """
    versions, image = entity["versions"], entity["fields"]
    current = versions.get(path)
    hidden = _hidden_by_ancestor(versions, path, version)
    if current is not None and version <= current:
        if version < current or hidden:
            return False
        old = _get_path(image, path)
        if old == value or _canonical(value) <= _canonical(old):
            return False
    versions[path] = version
    if hidden:
        return True
    existing = _get_path(image, path)
    if isinstance(existing, dict) and existing:
        prefix = f"{path}/"
        later = sorted((v, p.count("/"), p[len(prefix):]) for p, v in versions.items()
                       if p.startswith(prefix) and v >= version)
        if later:
            value = {}
            for _, _, sub in later:
                _set_path(value, sub, _get_path(existing, sub))
    if current == version and value == existing:
        return False  # a tie whose newer leaves below keep the image as it was
    _set_path(image, path, value)
    return True


def _assign_all(entity: dict, fields: Mapping[str, Any], version: Version, prefix: str = "") -> bool:
    versions, image = entity["versions"], entity["fields"]
    changed = False
    for name, value in fields.items():
        if isinstance(value, dict):
            if value:
                changed |= _assign_all(entity, value, version, f"{prefix}{name}/")
                continue
            value = {}  # the image must not share the event's own dict
        if not prefix and type(image.get(name)) is not dict:
            current = versions.get(name)
            if current is None or version > current:
                versions[name] = version
                image[name] = value
                changed = True
                continue
        changed |= _assign(entity, f"{prefix}{name}", value, version)
    return changed


def _write_newest(image: dict, versions: dict, fields: Mapping[str, Any], version: Version, prefix: str = "") -> int:
    """Write an event newer than every leaf of the entity: no comparisons needed. Counts the leaves."""
    written = 0
    for name, value in fields.items():
        if isinstance(value, dict) and value:
            child = image.get(name)
            child = image[name] = dict(child) if isinstance(child, dict) else {}
            written += _write_newest(child, versions, value, version, f"{prefix}{name}/")
        else:
            image[name] = {} if isinstance(value, dict) else value
            versions[prefix + name] = version
            written += 1
    return written


def _has_nested(fields: Mapping[str, Any]) -> bool:
    for value in fields.values():
        if type(value) is dict:
            return True
    return False


def _write_nested(entity: dict, event: ChangeEvent) -> None:
    """The newest upsert when nested values or nulled paths are involved."""
    versions = _expand(entity)
    written = _write_newest(entity["fields"], versions, event.fields, event.version)
    if not event.nulled:
        if len(versions) == written:
            entity["versions"] = None  # the others were older: this event wrote every leaf
        return
    for path in event.nulled:
        _assign(entity, path.replace(".", "/"), None, event.version)
    entity["version"] = event.version
    _compact(entity)


def _repeats(entity: dict, event: ChangeEvent) -> bool:
    """An upsert at the version of a compact entity that changes no leaf.

    Redeliveries are this; without the check each would expand and compare
    every leaf only to change nothing. Its life cycle cannot change either:
    an entity's `life` is never older than its `version`.
    """
    return not entity["versions"] and not event.nulled and event.fields.items() <= entity["fields"].items()


def _apply_life(entity: dict, event: ChangeEvent) -> str:
    """A delete or restore: only the life cycle changes, never a field.

    An erasure is part of the life cycle, so one that is newer supersedes
    these by `life` alone.
    """
    version, life = event.version, life_key(event)
    if life <= entity["life"]:
        return SUPERSEDED
    if version > entity["version"]:
        if entity["fields"]:
            _expand(entity)  # the fields keep their older versions
        entity["version"] = version
    entity["life"] = life
    return APPLIED


def fold_event(entity: dict, event: ChangeEvent) -> str:
    """Fold one event into an entity state in place; say whether it applied.

    Versions order events; at equal versions a leaf keeps the larger value
    and the life cycle follows `LIFE_RANK`, so the fold is commutative
    without hashing every event.
    """
    version, op = event.version, event.op
    if op == UPSERT and version > entity["version"]:
        # Newer than anything folded so far, CDC's usual order: every field wins.
        image, versions = entity["fields"], entity["versions"]
        if not image and not versions and not event.nulled:
            entity["fields"] = dict(event.fields)
        elif event.nulled or _has_nested(event.fields):
            _write_nested(entity, event)
        elif not versions and not _has_nested(image):
            # Flat leaves only: those the event leaves out keep the entity's old version.
            image.update(event.fields)
            if len(image) != len(event.fields):
                versions = entity["versions"] = dict.fromkeys(image, entity["version"])
                for name in event.fields:
                    versions[name] = version
        else:
            if not versions:
                versions = _expand(entity)
            image.update(event.fields)
            for name in event.fields:
                versions[name] = version
            if len(versions) == len(event.fields):
                entity["versions"] = None  # the others were older: this event wrote every leaf
        entity["life"] = (version, _UPSERT_RANK)
        entity["version"] = version
        return APPLIED
    if op == UPSERT:
        if version == entity["version"] and _repeats(entity, event):
            return SUPERSEDED
    elif op == DELETE or op == RESTORE:
        return _apply_life(entity, event)
    _expand(entity)
    outcome = _apply_older(entity, event)
    _compact(entity)
    return outcome


def _apply_older(entity: dict, event: ChangeEvent) -> str:
    """Older upserts, erasures and merges: per-leaf comparisons on expanded versions."""
    version, op = event.version, event.op
    erased = entity["erased"]
    if erased is not None and version <= erased[0]:
        return SUPERSEDED
    if op == UPSERT:
        changed = _assign_all(entity, event.fields, version)
        for path in event.nulled:
            changed |= _assign(entity, path.replace(".", "/"), None, version)
    elif op == ERASE:
        erased = life_key(event)
        kept = {path: v for path, v in entity["versions"].items() if v > erased[0]}
        image: dict = {}
        for path in sorted(kept, key=lambda p: (kept[p], p.count("/"))):
            value = _get_path(entity["fields"], path)
            _set_path(image, path, {} if isinstance(value, dict) else value)
        entity.update(fields=image, versions=kept, erased=erased)
        changed = True
    elif op == MERGE:
        changed = _assign(entity, "merged_into", event.parent_id, version)
    else:
        raise ValueError(f"unknown op {op!r}")
    life = life_key(event)
    if life > entity["life"]:
        entity["life"] = life
        changed = True
    if changed:
        if version > entity["version"]:
            entity["version"] = version
        return APPLIED
    return SUPERSEDED


def entity_email(source: str, entity: Mapping | None) -> str | None:
    """The normalised email a live entity of a parent source belongs to, if it has one."""
    if not entity or not is_alive(entity):
        return None
    return normalise_email(entity["fields"].get(SOURCES[source].email_field))


def merged_into(entity: Mapping | None) -> str | None:
    """The entity a merged-away one (HubSpot contact.merge) now lives in."""
    return None if not entity or is_alive(entity) else entity["fields"].get("merged_into")
