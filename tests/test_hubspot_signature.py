"""HubSpot request signatures (pure): HubSpot's own vectors, then the laws behind them."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from singleview.serving.hubspot_signature import (
    MAX_AGE_MS, SignatureError, check_timestamp, sign_v2, sign_v3, signed_uri, verify_v2, verify_v3)

# The example app secret and URL of HubSpot's "Validating requests" page; the v3
# vector is the one in HubSpot's Python client (tests/spec/utils/test_signature.py).
SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
URL = "https://www.example.com/webhook_uri"
V3_BODY = b"{'example_field':'example_value'}"
V3_TIMESTAMP = "15000000"
V3_SIGNATURE = "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="


def test_v3_matches_hubspots_vector():
    assert sign_v3(SECRET, "POST", URL, V3_BODY, V3_TIMESTAMP) == V3_SIGNATURE
    verify_v3(SECRET, "POST", URL, V3_BODY, V3_SIGNATURE, V3_TIMESTAMP, now_ms=15_000_000 + 1_000)


@pytest.mark.parametrize("method, body, expected", [
    # HubSpot's documented v2 examples: a POST with a body, a GET without one.
    ("POST", b'{"example_field":"example_value"}', "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"),
    ("GET", b"", "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"),
    # HubSpot's Python client's v2 vector.
    ("POST", V3_BODY, "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383"),
])
def test_v2_matches_hubspots_vectors(method, body, expected):
    assert sign_v2(SECRET, method, URL, body) == expected
    verify_v2(SECRET, method, URL, body, expected.upper())


@pytest.mark.parametrize("signature, timestamp, now, reason", [
    (V3_SIGNATURE, V3_TIMESTAMP, 15_000_000 + MAX_AGE_MS + 1, "more than 5 minutes"),
    (V3_SIGNATURE, V3_TIMESTAMP, 15_000_000 - MAX_AGE_MS - 1, "more than 5 minutes"),
    (V3_SIGNATURE, None, 15_000_000, "missing X-HubSpot-Request-Timestamp"),
    (V3_SIGNATURE, "", 15_000_000, "missing X-HubSpot-Request-Timestamp"),
    (V3_SIGNATURE, "15000000.0", 15_000_000, "not epoch milliseconds"),
    (V3_SIGNATURE, "+15000000", 15_000_000, "not epoch milliseconds"),
    (V3_SIGNATURE, "1_5000000", 15_000_000, "not epoch milliseconds"),
    (V3_SIGNATURE, "9" * 400, 15_000_000, "not epoch milliseconds"),
    (None, V3_TIMESTAMP, 15_000_000, "missing X-HubSpot-Signature-v3"),
    ("HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQW=", V3_TIMESTAMP, 15_000_000, "does not match"),
    ("é" * 44, V3_TIMESTAMP, 15_000_000, "does not match"),
])
def test_v3_refusals_say_why(signature, timestamp, now, reason):
    with pytest.raises(SignatureError, match=reason):
        verify_v3(SECRET, "POST", URL, V3_BODY, signature, timestamp, now)


def test_the_timestamp_is_signed_too():
    """A replay with a fresh timestamp header and the old signature fails."""
    with pytest.raises(SignatureError, match="does not match"):
        verify_v3(SECRET, "POST", URL, V3_BODY, V3_SIGNATURE, "15000001", now_ms=15_000_001)


def test_signed_uri_decodes_exactly_hubspots_table():
    assert signed_uri("https://h.example/webhooks/hubspot?a=%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B") == \
        "https://h.example/webhooks/hubspot?a=:/?@!$'()*,;"
    # Everything else stays as sent: other escapes, lower-case hex, a literal percent.
    for kept in ("%20", "%26", "%3D", "%2B", "%25", "%23", "%3a", "%2f", "%C3%A9", "100%"):
        assert signed_uri(f"https://h.example/p?q={kept}") == f"https://h.example/p?q={kept}"


CHARACTERS = ":/?@!$'()*,;"
uris = st.text(st.sampled_from("abc/?=&%:;@!$'()*,+ 3AF"), max_size=40).map(lambda t: "https://h.example/" + t)


@given(uris, st.data())
def test_escaping_a_listed_character_never_changes_the_signed_uri(uri, data):
    """The law HubSpot's table stands for: a sender may or may not escape those twelve."""
    positions = [i for i, c in enumerate(uri) if c in CHARACTERS and i >= len("https://h.example/")]
    if positions:
        i = data.draw(st.sampled_from(positions))
        escaped = uri[:i] + f"%{ord(uri[i]):02X}" + uri[i + 1:]
        assert signed_uri(escaped) == signed_uri(uri)
    assert signed_uri(signed_uri(uri)) == signed_uri(uri)


@given(st.text(min_size=1, max_size=40), st.binary(max_size=300), st.integers(0, 10**13), st.integers(-MAX_AGE_MS, MAX_AGE_MS))
def test_v3_round_trip_and_any_flipped_byte_fails(secret, body, sent, skew):
    timestamp = str(sent)
    signature = sign_v3(secret, "POST", URL, body, timestamp)
    verify_v3(secret, "POST", URL, body, signature, timestamp, now_ms=sent + skew)
    if body:
        tampered = bytes([body[0] ^ 1]) + body[1:]
        with pytest.raises(SignatureError, match="does not match"):
            verify_v3(secret, "POST", URL, tampered, signature, timestamp, now_ms=sent + skew)
    with pytest.raises(SignatureError, match="does not match"):
        verify_v3(secret + "x", "POST", URL, body, signature, timestamp, now_ms=sent + skew)


@given(st.integers(0, 10**13), st.integers(-2 * MAX_AGE_MS, 2 * MAX_AGE_MS))
def test_a_timestamp_is_accepted_exactly_within_five_minutes(sent, skew):
    if abs(skew) <= MAX_AGE_MS:
        assert check_timestamp(str(sent), sent + skew) == sent
    else:
        with pytest.raises(SignatureError):
            check_timestamp(str(sent), sent + skew)
