"""The projection step (pure: no Beam, no pymongo).

A section's parent entity and its children (an order and its items, a
HubSpot contact and its page views) are projected together, keyed by the
parent's id, so the join of a child to its parent is local to one key: no
worker ever looks for what another is writing. `project` folds a batch of
events into what is stored for one parent and says what the parent now
contributes: to customers' single views (keyed by email), or, for a HubSpot
contact, to the marketing contribution of the contact it lives in (`Part`),
which `resolve_owner` turns into a contribution once the parts of every
merged contact are together.

Every call re-asserts the parent's current contribution and retracts it from
every email it had before (`Group.retired`), changed or not: a re-run after
a failure, which finds its events already applied, still brings the views up
to date, and finds nothing to write when they are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from singleview.model import Record
from singleview.fold import (APPLIED, SUPERSEDED, entity_email, fold_event, in_fold_order, is_alive, merged_into,
                             new_entity)
from singleview.model import ChangeEvent
from singleview.sources import Section
from singleview.view import DEFAULT_HISTORY_CAP, Contribution, changed_millis, crm_data, live_fields, marketing_data, \
    order_data


@dataclass
class Group:
    """What is stored for one parent entity of a section.

    `parent` is the parent's entity state (None until an event of its own
    arrived), `children` its children's by id; each is one stored document
    whose revision grows with every change. `retired` are the emails (or,
    for a contact, the ids of other contacts) it contributed to before and no
    longer does; they are dropped once the parent is erased.
    """

    id: str
    parent: dict | None = None
    parent_rev: int = 0
    children: dict[str, dict] = field(default_factory=dict)
    children_rev: int = 0
    retired: tuple[str, ...] = ()

    @property
    def rev(self) -> tuple[int, int]:
        return self.parent_rev, self.children_rev


@dataclass(frozen=True)
class Part(Record):
    """A HubSpot contact's share of the marketing contribution of its owner:
    itself, or the contact it was merged into."""

    contact_id: str
    owner_id: str
    rev: tuple[int, int]
    live: bool
    email: str | None = None                     # the owner's own part: its current email
    properties: Mapping | None = None            # the owner's own part: its properties
    views: Mapping[str, Mapping] = field(default_factory=dict)
    changed: int | None = None                   # millis of the newest change to the contact or its views
    retired: tuple[str, ...] = ()                # emails the contact had before

    @property
    def slot(self) -> str:
        return self.contact_id


@dataclass
class Projected:
    group: Group
    parent_changed: bool
    children_changed: bool
    outcomes: list[tuple[str, str]]              # (source, APPLIED or SUPERSEDED) per event
    contributions: list                          # Contributions, or Parts for the marketing section


def _copy(entity: dict) -> dict:
    """Enough of a copy for the fold, which replaces nested values instead of changing them."""
    versions = entity["versions"]
    return {**entity, "fields": dict(entity["fields"]), "versions": dict(versions) if versions else versions}


def _fold_children(group: Group, events: list[ChangeEvent], children: dict) -> list[tuple[ChangeEvent, str]]:
    outcomes = []
    for event in in_fold_order(events):
        child = children.get(event.entity_id)
        if child is None:
            child = new_entity()
        elif child is group.children.get(event.entity_id):
            child = _copy(child)
        children[event.entity_id] = child
        outcomes.append((event, fold_event(child, event)))
    return outcomes


def _forget_erased(parent: dict | None, children: dict) -> set[str]:
    """A privacy erasure forgets the children that happened no later than it did."""
    erased = parent and parent["erased"]
    if not erased:
        return set()
    cut = erased[0].millis
    gone = {cid for cid, child in children.items() if (child["version"].millis or 0) <= cut}
    for cid in gone:
        del children[cid]
    return gone


def _retired(section: Section, before: Group, parent: dict | None) -> tuple[tuple[str, ...], str | None]:
    source = section.parent.name
    old, new = entity_email(source, before.parent), entity_email(source, parent)
    retired = set(before.retired)
    if old and old != new:
        retired.add(old)
    retired.discard(new)
    return tuple(sorted(retired)), new


def project(section: Section, group: Group, parent_events: Iterable[ChangeEvent],
            child_events: Iterable[ChangeEvent] = (), history_cap: int = DEFAULT_HISTORY_CAP) -> Projected:
    """Fold the events of one parent and its children into `group` (left unchanged) and
    say what the parent contributes now."""
    parent_events, child_events = list(parent_events), list(child_events)
    parent = group.parent
    parent_outcomes = []
    if parent_events:
        parent = new_entity() if parent is None else _copy(parent)
        parent_outcomes = [fold_event(parent, e) for e in in_fold_order(parent_events)]
    children = dict(group.children)
    child_outcomes = _fold_children(group, child_events, children)
    gone = _forget_erased(parent, children)
    kept = [APPLIED if o == APPLIED and e.entity_id not in gone else SUPERSEDED for e, o in child_outcomes]
    outcomes = [(section.parent.name, o) for o in parent_outcomes]
    outcomes += [(section.child.name, o) for o in kept]
    parent_changed = APPLIED in parent_outcomes
    children_changed = APPLIED in kept or bool(gone & set(group.children))
    retired, email = _retired(section, group, parent)
    new = Group(group.id, parent, group.parent_rev + parent_changed, children,
                group.children_rev + children_changed, retired)
    contributions = contributions_of(section, new, email, history_cap)
    if parent and parent["erased"]:
        parent_changed |= bool(new.retired)
        new.retired = ()
    return Projected(new, parent_changed, children_changed, outcomes, contributions)


def contributions_of(section: Section, group: Group, email: str | None, history_cap: int) -> list:
    """Retractions from every email the parent had before, and its assertion on its current one."""
    if section.name == "marketing":
        return marketing_parts(group, email)
    out = [Contribution(section.name, group.id, old, group.rev, False) for old in group.retired]
    if email:
        data = crm_data(group.id, group.parent) if section.child is None else \
            order_data(group.id, group.parent, group.children)
        out.append(Contribution(section.name, group.id, email, group.rev, True, data))
    return out


def marketing_parts(group: Group, email: str | None) -> list[Part]:
    """The contact's part for its owner, and dead parts for the owners it no longer has."""
    parent = group.parent
    owner = merged_into(parent) or group.id
    merged = owner != group.id
    own = owner == group.id and parent is not None and is_alive(parent)
    views = dict(live_fields(group.children)) if merged or own else {}
    part = Part(group.id, owner, group.rev, merged or own, email if own else None,
                dict(parent["fields"]) if own else None, views,
                changed_millis(parent, *group.children.values()), group.retired)
    others = {group.id, (parent or {"fields": {}})["fields"].get("merged_into")} - {owner, None}
    return [part] + [Part(group.id, other, group.rev, False, retired=group.retired) for other in sorted(others)]


def resolve_owner(owner_id: str, parts: Mapping[str, Part], history_cap: int = DEFAULT_HISTORY_CAP) -> list:
    """The marketing contribution of a contact, with the page views of every contact merged into it.

    Its revision sums its parts' revisions, which only grow: a newer set of
    parts always outranks an older one.
    """
    own = parts.get(owner_id)
    rev = (sum(p.rev[0] for p in parts.values()), sum(p.rev[1] for p in parts.values()))
    email = own.email if own is not None and own.live else None
    out = [Contribution("marketing", owner_id, old, rev, False) for old in (own.retired if own else ())
           if old != email]
    if email:
        live = [p for p in parts.values() if p.live]
        times = [p.changed for p in live if p.changed is not None]
        data = marketing_data(owner_id, {"fields": own.properties}, [v for p in live for v in p.views.values()],
                              max(times) if times else None, history_cap)
        out.append(Contribution("marketing", owner_id, email, rev, True, data))
    return out
