"""Identifier normalisation and hashing against known vectors."""

import hashlib

import pandas as pd
import pytest

from marketing.identifiers import (
    normalise_email,
    normalise_emails,
    normalise_phone,
    normalise_phones,
    sha256_hex,
    sha256_hex_series,
)


def test_sha256_known_vector():
    assert (
        sha256_hex("test@example.com")
        == "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
    )
    assert sha256_hex(None) is None
    # UTF-8, lower-case hex, cross-checked against hashlib directly.
    assert sha256_hex("zoë@example.com") == hashlib.sha256("zoë@example.com".encode()).hexdigest()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Test@Example.COM ", "test@example.com"),
        ("a.b+tag@shop.de", "a.b+tag@shop.de"),
        ("", None),
        ("   ", None),
        ("no-at-sign.example.com", None),
        ("@example.com", None),
        ("user@", None),
        ("a@b@c.com", None),
        ("with space@example.com", None),
        (None, None),
        (float("nan"), None),
        (pd.NA, None),
    ],
)
def test_normalise_email(raw, expected):
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    ("phone", "country", "e164"),
    [
        ("(415) 555-0123", "US", "+14155550123"),
        ("415.555.0123", "us", "+14155550123"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("030 12345678", "DE", "+493012345678"),
        ("+44 20 7946 0958", None, "+442079460958"),  # international format needs no country
        ("+44 20 7946 0958", "DE", "+442079460958"),  # ... and ignores it
    ],
)
def test_normalise_phone_valid(phone, country, e164):
    assert normalise_phone(phone, country, "e164") == e164
    assert normalise_phone(phone, country, "digits") == e164[1:]


@pytest.mark.parametrize(
    ("phone", "country"),
    [
        ("12", "US"),  # too short to be possible
        ("not a phone", "US"),  # unparseable
        ("4155550123", None),  # national number without a region
        ("4155550123", "XX"),  # unknown region
        ("", "US"),
        (None, "US"),
        (float("nan"), "GB"),
    ],
)
def test_normalise_phone_invalid(phone, country):
    assert normalise_phone(phone, country) is None


def test_normalise_phone_rejects_unknown_style():
    with pytest.raises(ValueError, match="got 'E164'"):
        normalise_phone("(415) 555-0123", "US", "E164")


def test_series_helpers_match_scalar_functions():
    emails = pd.Series([" A@B.com", None, "bad"], index=[10, 11, 12])
    phones = pd.Series(["(415) 555-0123", "020 7946 0958", None, "(415) 555-0123"])
    countries = pd.Series(["US", "GB", "US", "US"])

    normalised = normalise_emails(emails)
    assert list(normalised.index) == [10, 11, 12]
    assert normalised.tolist() == [normalise_email(v) for v in emails]

    digits = normalise_phones(phones, countries, "digits")
    assert digits.tolist() == [
        normalise_phone(p, c, "digits") for p, c in zip(phones, countries, strict=True)
    ]
    hashed = sha256_hex_series(digits)
    assert hashed.tolist() == [None if v is None else sha256_hex(v) for v in digits]

    with pytest.raises(ValueError, match="same length"):
        normalise_phones(phones, countries.iloc[:2])
