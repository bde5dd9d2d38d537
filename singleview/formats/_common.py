"""Helpers shared by the decoders (pure: no Beam, no pymongo)."""
from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

import orjson

from singleview.model import ChangeEvent, DecodeError, RawMessage

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

Decoder = Callable[[RawMessage, Any], "list[ChangeEvent]"]


def snake_case(name: str) -> str:
    """`MailingAddress` -> `mailing_address`; names already in snake_case are kept."""
    return _WORD_BOUNDARY.sub("_", name).lower()


def guarded(decoder: Decoder) -> Decoder:
    """Turn any unexpected failure into a DecodeError, so it becomes a dead letter."""
    @functools.wraps(decoder)
    def wrapper(message, config):
        try:
            return decoder(message, config)
        except DecodeError:
            raise
        except Exception as error:  # noqa: BLE001 - the point is to catch everything
            raise DecodeError(f"{decoder.__name__}: unexpected {type(error).__name__}: {error}") from error
    return wrapper


def load_json(data: bytes) -> Any:
    """orjson where it can (a third of json's time a message); json for what it refuses
    (NaN, integers beyond 64 bits, lone surrogates, bad input), so both accept the same."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as error:
        raise DecodeError(f"message is not UTF-8: {error}") from error
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise DecodeError(f"message is not valid JSON: {error}") from error


def require(mapping: Any, key: str, what: str) -> Any:
    if not isinstance(mapping, dict):
        raise DecodeError(f"{what} must be a JSON object, got {type(mapping).__name__}")
    if mapping.get(key) is None:
        raise DecodeError(f"missing field {key!r} in {what}")
    return mapping[key]


def as_object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise DecodeError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def as_int(value: Any, what: str) -> int:
    """A non-negative integer (version parts); digit strings are accepted."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DecodeError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def as_id(value: Any, what: str) -> str:
    """Ids are strings everywhere, whatever the source sent."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise DecodeError(f"{what} must be a non-empty string or integer id, got {value!r}")
    return str(value)


def iso_utc(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.fffZ`, the one time format events carry."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    m = moment.astimezone(timezone.utc)
    return (f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
            f".{m.microsecond // 1000:03d}Z")


def millis_to_iso(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{what} must be epoch milliseconds, got {value!r}")
    try:
        return iso_utc(EPOCH + timedelta(milliseconds=value))
    except OverflowError as error:
        raise DecodeError(f"{what} is out of range: {value!r}") from error


def parse_iso(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise DecodeError(f"{what} must be an ISO-8601 string, got {value!r}")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as error:
        raise DecodeError(f"{what} is not an ISO-8601 time: {value!r}") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def normalise_time(value: Any, what: str) -> str:
    """ISO strings and epoch millis alike become ISO-8601 UTC with millis."""
    if isinstance(value, str):
        try:
            return iso_utc(parse_iso(value, what))
        except OverflowError as error:
            raise DecodeError(f"{what} is out of range: {value!r}") from error
    return millis_to_iso(value, what)


def epoch_millis(value: Any, what: str) -> int:
    """Epoch millis from either millis or an ISO string (for versions)."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        delta = parse_iso(value, what) - EPOCH
        millis = delta // timedelta(milliseconds=1)
        if millis < 0:
            raise DecodeError(f"{what} is before 1970: {value!r}")
        return millis
    return as_int(value, what)


# PostgreSQL's numeric, the widest decimal of the sources' databases, keeps scales within ±1000;
# a message claiming more is refused rather than expanded (10 ** 10**9 would never finish).
MAX_DECIMAL_SCALE = 1000


def format_decimal(unscaled: int, scale: int) -> str:
    """Exactly `scale` places, built from digits so no context can round it."""
    if abs(scale) > MAX_DECIMAL_SCALE:
        raise DecodeError(f"decimal scale {scale} is beyond ±{MAX_DECIMAL_SCALE}")
    if scale <= 0:
        return str(unscaled * 10 ** -scale)
    sign = "-" if unscaled < 0 else ""
    digits = str(abs(unscaled)).rjust(scale + 1, "0")
    return f"{sign}{digits[:-scale]}.{digits[-scale:]}"


def decode_decimal_bytes(value: Any, scale: int, what: str) -> str:
    """Kafka Connect Decimal: base64 of big-endian two's-complement unscaled bytes."""
    if not isinstance(value, str):
        raise DecodeError(f"{what}: decimal must be a base64 string, got {value!r}")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise DecodeError(f"{what}: undecodable decimal {value!r}: {error}") from error
    if not raw:
        raise DecodeError(f"{what}: undecodable decimal {value!r}: no bytes")
    return format_decimal(int.from_bytes(raw, "big", signed=True), scale)


def rescale_decimal(value: Any, scale: int, what: str) -> str:
    """A decimal sent as a number or plain string (decimal.handling.mode string/double)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise DecodeError(f"{what}: undecodable decimal {value!r}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as error:
        raise DecodeError(f"{what}: undecodable decimal {value!r}") from error
    if not number.is_finite():
        raise DecodeError(f"{what}: decimal is not finite: {value!r}")
    sign, digits, exponent = number.as_tuple()
    shift = exponent + scale
    if abs(shift) > 2 * MAX_DECIMAL_SCALE:
        raise DecodeError(f"{what}: decimal {value!r} at scale {scale} is out of range")
    unscaled = int("".join(map(str, digits)) or "0")
    if shift >= 0:
        unscaled *= 10 ** shift
    else:
        unscaled, remainder = divmod(unscaled, 10 ** -shift)
        if remainder * 2 >= 10 ** -shift:
            unscaled += 1
    return format_decimal(-unscaled if sign else unscaled, scale)


def encode_decimal(value: Any, scale: int) -> str:
    """The inverse of `decode_decimal_bytes` (rounding half away from zero), for tests and samples."""
    rescaled = rescale_decimal(value, scale, "value")
    unscaled = int(rescaled.replace(".", "")) if scale > 0 else int(rescaled) // 10 ** -scale
    length = (unscaled + (unscaled < 0)).bit_length() // 8 + 1
    return base64.b64encode(unscaled.to_bytes(length, "big", signed=True)).decode("ascii")
