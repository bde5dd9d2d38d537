"""Turning query parameters into MongoDB filters, projections and sorts.

Everything a client sends is validated here; a bad value raises a 400 that
names the parameter. Nothing here talks to MongoDB.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import bad_parameter

HIDDEN = "_meta"  # bookkeeping, never shown nor queryable
CURRENCY_RE = re.compile(r"[A-Z]{3}")
# A field path whose first part starts with a letter, or is _id or _rev: `_meta`
# cannot even be named. The same patterns are in the OpenAPI schema.
FIELD = r"(?:[A-Za-z][A-Za-z0-9_]*|_id|_rev)(?:\.[A-Za-z0-9_]+)*"
FIELD_RE = re.compile(FIELD)
FIELDS_PATTERN = rf"^( *{FIELD}( *, *{FIELD})*)? *$"
SORT_PATTERN = rf"^( *[+-]?{FIELD}( *, *[+-]?{FIELD})*)? *$"
CURRENCY_PATTERN = r"^[A-Za-z]{3}$"
DECIMAL_PATTERN = r"^[0-9]{1,30}(\.[0-9]{1,18})?$"

# Mia-Platform CRUD style _q: the only operators accepted (DESIGN.md section 5).
ALLOWED_OPERATORS = frozenset(
    "$and $or $eq $ne $gt $gte $lt $lte $in $nin $exists $elemMatch $size $regex".split()
)
MAX_Q_LENGTH = 8192
MAX_Q_DEPTH = 8


@dataclass
class Segment:
    """The named segment filters; every one given narrows the result (AND)."""
    viewed_category: str | None = None
    no_purchase_days: int | None = None
    min_orders: int | None = None
    opted_in: bool | None = None
    updated_since: datetime | None = None
    min_lifetime_value: str | None = None
    currency: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


ISO_DATETIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


def iso_datetime_text(value: Any) -> Any:
    """Only ISO 8601 date-times: pydantic would also read '0.5' as a Unix time."""
    if isinstance(value, str) and not ISO_DATETIME_RE.match(value):
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")
    return value


def normalise_email(email: str) -> str:
    return email.strip().lower()


# --- lifetime value ---------------------------------------------------------

def lifetime_threshold(minimum: str) -> Decimal:
    """The min_lifetime_value parameter, checked."""
    try:
        value = Decimal(minimum.strip())
    except (InvalidOperation, AttributeError):
        raise bad_parameter("min_lifetime_value", "must be a decimal number, e.g. 100 or 99.95")
    if not value.is_finite() or value < 0:
        raise bad_parameter("min_lifetime_value", "must be a non-negative decimal number")
    if value.as_tuple().exponent < -18 or value > Decimal(10) ** 30:
        raise bad_parameter("min_lifetime_value", "out of range")
    return value


def lifetime_value_clause(minimum: str, currency: str) -> dict:
    """An exact `stats.lifetime_value.<CUR> >= minimum` on decimal *strings*.

    The pipeline stores money as plain decimal strings ("129.99", "1000",
    "0.50": no exponent, no sign for non-negative values, no leading zeros
    in the integer part). For such strings numeric order is:
      * more integer digits  => larger, and
      * same number of integer digits => plain string (byte) order, provided
        the threshold carries no trailing fractional zeros ("129.5" not
        "129.50"; a value "129.50" then sorts after "129.5", which is right
        for >=, and "129" sorts before "129.5").
    So ">= m" (m with k integer digits) is
      value ~ /^[0-9]{k+1,}(\\.|$)/  OR  (value ~ /^[0-9]{k}(\\.|$)/ AND value >= m)
    which MongoDB evaluates exactly, so count/skip/limit stay server-side.
    Negative values (refund-only customers) never match a threshold >= 0.
    """
    text = format(lifetime_threshold(minimum), "f")  # plain notation, integer part without leading zeros
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    integer = text.split(".")[0]
    k = len(integer)
    path = f"stats.lifetime_value.{currency}"
    return {"$or": [
        {path: {"$regex": f"^[0-9]{{{k + 1},}}(\\.|$)"}},
        {path: {"$regex": f"^[0-9]{{{k}}}(\\.|$)", "$gte": text}},
    ]}


def check_currency(currency: str | None) -> str:
    cur = (currency or "").strip().upper()
    if not CURRENCY_RE.fullmatch(cur):
        raise bad_parameter("currency", "must be a three-letter ISO 4217 code, e.g. USD")
    return cur


def segment_filter(seg: Segment) -> list[dict]:
    clauses: list[dict] = []
    if seg.viewed_category is not None:
        if not seg.viewed_category:
            raise bad_parameter("viewed_category", "must not be empty")
        clauses.append({"marketing_preferences.viewed_categories.category": seg.viewed_category})
    if seg.no_purchase_days is not None:
        cutoff = seg.now - timedelta(days=seg.no_purchase_days)
        clauses.append({"$or": [
            {"stats.last_order_at": {"$lt": cutoff}},
            {"stats.last_order_at": {"$exists": False}},
            {"stats.last_order_at": None},
        ]})
    if seg.min_orders is not None:
        clauses.append({"stats.order_count": {"$gte": seg.min_orders}})
    if seg.opted_in is not None:
        clauses.append({"marketing_preferences.email_opt_out": not seg.opted_in})
    if seg.updated_since is not None:
        since = seg.updated_since
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        clauses.append({"updated_at": {"$gte": since}})
    if seg.min_lifetime_value is not None:
        if seg.currency is None:
            raise bad_parameter("currency", "required with min_lifetime_value")
        clauses.append(lifetime_value_clause(seg.min_lifetime_value, check_currency(seg.currency)))
    elif seg.currency is not None:
        check_currency(seg.currency)
    return clauses


# --- Mia-Platform CRUD style _q, _p, _s -------------------------------------

def _check_field(name: str, parameter: str) -> None:
    if not FIELD_RE.fullmatch(name):
        raise bad_parameter(parameter, f"invalid field name {name!r}")
    if name == HIDDEN or name.startswith(HIDDEN + "."):
        raise bad_parameter(parameter, f"field {name!r} is not accessible")


def _check_regex(pattern: Any, max_length: int) -> None:
    if not isinstance(pattern, str):
        raise bad_parameter("_q", "$regex must be a string")
    if not pattern.startswith("^"):
        raise bad_parameter("_q", "$regex must be anchored with '^'")
    if len(pattern) > max_length:
        raise bad_parameter("_q", f"$regex longer than {max_length} characters")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise bad_parameter("_q", f"$regex is not a valid pattern: {exc}")


def _check_value(value: Any, depth: int, max_regex: int) -> None:
    """A value on the right of a field: a literal, or an operator document."""
    if depth > MAX_Q_DEPTH:
        raise bad_parameter("_q", "filter nested too deeply")
    if isinstance(value, dict):
        keys = list(value)
        if any(k.startswith("$") for k in keys):
            if not all(k.startswith("$") for k in keys):
                raise bad_parameter("_q", "cannot mix operators and fields in one object")
            for op, arg in value.items():
                if op == "$options":
                    if "$regex" not in value or not isinstance(arg, str) or set(arg) - set("imsx"):
                        raise bad_parameter("_q", "$options needs $regex and only i, m, s, x")
                    continue
                if op not in ALLOWED_OPERATORS or op in ("$and", "$or"):
                    raise bad_parameter("_q", f"operator {op} is not allowed")
                if op == "$regex":
                    _check_regex(arg, max_regex)
                elif op in ("$in", "$nin"):
                    if not isinstance(arg, list):
                        raise bad_parameter("_q", f"{op} needs an array")
                    for item in arg:
                        if isinstance(item, dict) and any(k.startswith("$") for k in item):
                            raise bad_parameter("_q", f"{op} takes values, not operators")
                        _check_value(item, depth + 1, max_regex)
                elif op == "$exists":
                    if not isinstance(arg, bool):
                        raise bad_parameter("_q", "$exists needs true or false")
                elif op == "$size":
                    if not isinstance(arg, int) or isinstance(arg, bool) or arg < 0:
                        raise bad_parameter("_q", "$size needs a non-negative integer")
                elif op == "$elemMatch":
                    if not isinstance(arg, dict):
                        raise bad_parameter("_q", "$elemMatch needs an object")
                    if any(k.startswith("$") for k in arg):
                        _check_value(arg, depth + 1, max_regex)
                    else:
                        _check_filter(arg, depth + 1, max_regex, nested=True)
                else:
                    _check_value(arg, depth + 1, max_regex)
        else:
            for k, v in value.items():  # an embedded-document literal
                _check_field(k, "_q")
                _check_value(v, depth + 1, max_regex)
    elif isinstance(value, list):
        for item in value:
            _check_value(item, depth + 1, max_regex)


def _check_filter(filt: Any, depth: int, max_regex: int, nested: bool = False) -> None:
    if depth > MAX_Q_DEPTH:
        raise bad_parameter("_q", "filter nested too deeply")
    if not isinstance(filt, dict):
        raise bad_parameter("_q", "must be a JSON object")
    for key, value in filt.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise bad_parameter("_q", f"{key} needs a non-empty array")
            for sub in value:
                _check_filter(sub, depth + 1, max_regex)
        elif key.startswith("$"):
            raise bad_parameter("_q", f"operator {key} is not allowed")
        else:
            _check_field(key, "_q")
            _check_value(value, depth + 1, max_regex)


def _dates(value: Any) -> Any:
    """Extended-JSON dates, `{"$date": "2026-01-01T00:00:00Z"}`, become BSON dates
    so `_q` can compare against updated_at, stats.last_order_at, ..."""
    if isinstance(value, dict):
        if list(value) == ["$date"]:
            raw = value["$date"]
            try:
                if isinstance(raw, (int, float)) and not isinstance(raw, bool):
                    return datetime.fromtimestamp(raw / 1000, timezone.utc)
                parsed = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
            except (ValueError, OverflowError, OSError):
                raise bad_parameter("_q", f"invalid $date {raw!r}")
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        return {k: _dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates(v) for v in value]
    return value


def parse_q(raw: str, max_regex: int = 256) -> dict:
    if len(raw) > MAX_Q_LENGTH:
        raise bad_parameter("_q", f"longer than {MAX_Q_LENGTH} characters")
    try:
        filt = json.loads(raw)
    except ValueError as exc:
        raise bad_parameter("_q", f"not valid JSON ({exc.msg})")
    filt = _dates(filt)
    _check_filter(filt, 0, max_regex)
    return filt


def parse_projection(raw: str | None) -> dict | None:
    """`_p=email,stats.order_count` -> inclusion projection; `_meta` is always out."""
    if raw is None or not raw.strip():
        return {HIDDEN: 0}
    fields = [f.strip() for f in raw.split(",") if f.strip()]
    projection: dict[str, int] = {}
    for name in fields:
        _check_field(name, "_p")
        projection[name] = 1
    return projection


def parse_sort(raw: str | None) -> list[tuple[str, int]]:
    """`_s=-updated_at,email`; `_id` is always the last key, so the order is total."""
    keys: list[tuple[str, int]] = []
    for part in (raw or "").split(","):
        part = part.strip()
        if not part:
            continue
        direction = -1 if part.startswith("-") else 1
        name = part.lstrip("+-")
        _check_field(name, "_s")
        if name not in [k for k, _ in keys]:
            keys.append((name, direction))
    if "_id" not in [k for k, _ in keys]:
        keys.append(("_id", 1))
    return keys


def combine(clauses: list[dict]) -> dict:
    clauses = [c for c in clauses if c]
    if not clauses:
        return {}
    if len(clauses) == 1:
        return clauses[0]
    return {"$and": clauses}


# --- documents out ----------------------------------------------------------

def public_document(doc: dict) -> dict:
    """The stored document minus `_meta` (queries already project it away; BSON-only
    types were made plain by the driver, see db.PLAIN_BSON)."""
    doc.pop(HIDDEN, None)
    return doc
