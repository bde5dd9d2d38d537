"""Turning query parameters into MongoDB filters, projections and sorts.

Everything a client sends is validated here; a bad value raises a 400 that
names the parameter. Nothing here talks to MongoDB.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from .errors import bad_parameter

HIDDEN = "_meta"  # bookkeeping, never shown nor queryable
# A field path whose first part starts with a letter, or is _id or _rev: `_meta`
# cannot even be named. The same patterns are in the OpenAPI schema.
FIELD = r"(?:[A-Za-z][A-Za-z0-9_]*|_id|_rev)(?:\.[A-Za-z0-9_]+)*"
FIELD_RE = re.compile(FIELD)
FIELDS_PATTERN = rf"^( *{FIELD}( *, *{FIELD})*)? *$"
SORT_PATTERN = rf"^( *[+-]?{FIELD}( *, *[+-]?{FIELD})*)? *$"
CURRENCY_PATTERN = r"^[A-Za-z]{3}$"
DECIMAL_PATTERN = r"^[0-9]{1,30}(\.[0-9]{1,18})?$"

# Mia-Platform CRUD style _q: the only operators accepted (docs/design.md section 5).
ALLOWED_OPERATORS = frozenset(
    "$and $or $eq $ne $gt $gte $lt $lte $in $nin $exists $elemMatch $size $regex".split()
)
MAX_Q_LENGTH = 8192
MAX_Q_DEPTH = 8
MAX_COUNT = 1_000_000_000  # BSON integers are 64-bit; anything near is a mistake
ISO_DATETIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


def iso_datetime_text(value: Any) -> Any:
    """Only ISO 8601 date-times: pydantic would also read '0.5' as a Unix time."""
    if isinstance(value, str) and not ISO_DATETIME_RE.match(value):
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")
    return value


class Segment(BaseModel):
    """The named segment filters, a query parameter model; every one given narrows the result (AND)."""

    model_config = ConfigDict(frozen=True)

    viewed_category: Annotated[str | None, Field(min_length=1, max_length=200,
                                                 description="viewed this category (exact)")] = None
    no_purchase_days: Annotated[int | None, Field(ge=0, le=36500,
                                                  description="no order in the last N days, including never")] = None
    min_orders: Annotated[int | None, Field(ge=0, le=MAX_COUNT, description="at least this many orders")] = None
    opted_in: Annotated[bool | None, Field(
        description="true: email_opt_out is false; false: email_opt_out is true")] = None
    updated_since: Annotated[datetime | None, BeforeValidator(iso_datetime_text),
                             Field(description="ISO 8601 date-time; naive means UTC")] = None
    min_lifetime_value: Annotated[str | None, Field(pattern=DECIMAL_PATTERN, description="decimal; needs currency",
                                                    examples=["100", "99.95"])] = None
    currency: Annotated[str | None, Field(pattern=CURRENCY_PATTERN, description="ISO 4217 code for min_lifetime_value",
                                          examples=["USD"], validate_default=True)] = None

    @field_validator("updated_since")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("min_lifetime_value") is not None:
            raise ValueError("required with min_lifetime_value")
        return value.upper() if value is not None else None

    @property
    def narrows(self) -> bool:
        """Any filter given (a currency alone filters nothing)."""
        return any(value is not None for name, value in self if name != "currency")

    @property
    def lifetime_value(self) -> tuple[str, Decimal] | None:
        """(currency, minimum) of min_lifetime_value."""
        return None if self.min_lifetime_value is None else (self.currency, Decimal(self.min_lifetime_value))

    def cutoff(self, now: datetime) -> datetime | None:
        """The last order is before this, if at all (no_purchase_days)."""
        return None if self.no_purchase_days is None else now - timedelta(days=self.no_purchase_days)


def normalise_email(email: str) -> str:
    return email.strip().lower()


# --- lifetime value ---------------------------------------------------------

def lifetime_value_clause(minimum: str | Decimal, currency: str) -> dict:
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
    text = format(Decimal(minimum), "f")  # plain notation, integer part without leading zeros
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    integer = text.split(".")[0]
    k = len(integer)
    path = f"stats.lifetime_value.{currency}"
    return {"$or": [
        {path: {"$regex": f"^[0-9]{{{k + 1},}}(\\.|$)"}},
        {path: {"$regex": f"^[0-9]{{{k}}}(\\.|$)", "$gte": text}},
    ]}


def segment_filter(seg: Segment, now: datetime | None = None) -> list[dict]:
    """The segment as MongoDB clauses (ANDed), as of `now`."""
    clauses: list[dict] = []
    if seg.viewed_category is not None:
        clauses.append({"marketing_preferences.viewed_categories.category": seg.viewed_category})
    if seg.no_purchase_days is not None:
        cutoff = seg.cutoff(now or datetime.now(timezone.utc))
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
        clauses.append({"updated_at": {"$gte": seg.updated_since}})
    if seg.lifetime_value is not None:
        currency, minimum = seg.lifetime_value
        clauses.append(lifetime_value_clause(minimum, currency))
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
