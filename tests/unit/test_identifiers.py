"""Identifier normalisation and hashing against known vectors."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from marketing.identifiers import (
    normalise_city,
    normalise_country,
    normalise_email,
    normalise_emails,
    normalise_name,
    normalise_phone,
    normalise_phones,
    normalise_series,
    normalise_zip,
    parsed_phones_used,
    per_distinct,
    per_distinct_pair,
    seed_parsed_phones,
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


def test_phone_parse_cache_holds_the_seed_and_this_runs_numbers_only(monkeypatch):
    """A seed replaces what the process held: bounded, and dropped numbers are parsed again."""
    import phonenumbers

    from marketing import identifiers

    seed_parsed_phones([])
    normalise_phone("(415) 555-0101", "US")
    normalise_phone("020 7946 0102", "GB")
    seed_parsed_phones([("(415) 555-0101", "US", "+14155550101")])
    assert set(identifiers._PARSED) == {("(415) 555-0101", "US")}
    calls = []
    real_parse = phonenumbers.parse
    monkeypatch.setattr(phonenumbers, "parse",
                        lambda *a, **k: calls.append(a) or real_parse(*a, **k))
    assert normalise_phone("(415) 555-0101", "US") == "+14155550101"
    assert normalise_phone("020 7946 0102", "GB") == "+442079460102"
    assert calls == [("020 7946 0102", "GB")]
    assert parsed_phones_used() == [("(415) 555-0101", "US", "+14155550101"),
                                    ("020 7946 0102", "GB", "+442079460102")]


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


# Meta's published normalisation examples (Conversions API "customer information parameters",
# the same rules as Custom Audiences): input -> normalised -> expected SHA-256.
META_VECTORS = [
    ("email", " John_Smith@gmail.com", "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"),
    ("phone", "(650)555-1212", "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"),
    ("name", "Mary", "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"),
    ("name", "Valéry", "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"),
    ("name", "정", "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14"),
]


@pytest.mark.parametrize(("kind", "raw", "expected"), META_VECTORS)
def test_meta_published_vectors(kind, raw, expected):
    normalised = {
        "email": normalise_email,
        "phone": lambda v: normalise_phone(v, "US", "digits"),
        "name": normalise_name,
    }[kind](raw)
    assert sha256_hex(normalised) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Mary-Ann ", "maryann"),
        ("O'Neil", "oneil"),
        ("VAN DER BERG", "vanderberg"),
        ("Zoë", "zoë"),
        ("Zoe\u0308", "zoë"),  # decomposed diaeresis composes (NFC) to the same bytes
        ("...", None),
        (None, None),
    ],
)
def test_normalise_name_lowercase_no_punctuation_no_spaces(raw, expected):
    assert normalise_name(raw) == expected


def test_city_country_zip():
    assert normalise_city("Menlo Park") == "menlopark"
    assert normalise_city("Saint-Étienne") == "saintétienne"
    assert normalise_country(" us ") == "US"
    assert normalise_country("USA") is None and normalise_country(None) is None
    assert normalise_zip("94025-1234", "US") == "94025"
    assert normalise_zip("940", "US") is None  # not a US ZIP: dropped rather than mis-hashed
    assert normalise_zip("SW1A 1AA", "GB") == "sw1a1aa"
    assert normalise_zip("08079", "ES") == "08079"  # leading zeros kept
    assert normalise_zip(None, "US") is None


def test_normalise_series_keeps_index_and_missing():
    values = pd.Series(["Ann", None, "!!"], index=[5, 6, 7])
    out = normalise_series(values, normalise_name)
    assert list(out.index) == [5, 6, 7]
    assert out.tolist() == ["ann", None, None]


@pytest.mark.parametrize("dtype", [object, "string"])
def test_per_distinct_equals_the_value_by_value_map(dtype):
    rng = np.random.default_rng(3)
    pool = [" Ann ", "ann", "Zoë", "O'Neil", "", "  ", None, "ZOË", "94025-1234"]
    values = pd.Series([pool[i] for i in rng.integers(0, len(pool), 500)], dtype=dtype,
                       index=np.arange(500) * 3, name="first_name")
    calls = []

    def counted(value):
        calls.append(value)
        return normalise_name(value)

    got = per_distinct(values, counted)
    expected = pd.Series([normalise_name(v) for v in values], index=values.index, dtype=object,
                         name="first_name")
    pd.testing.assert_series_equal(got, expected)
    assert len(calls) <= len(pool) + 1  # once per distinct value (+ the missing marker)
    hashed = sha256_hex_series(got)
    assert hashed.tolist() == [None if v is None else sha256_hex(v) for v in got]


def test_per_distinct_keeps_mixed_types_apart():
    values = pd.Series([1, 1.0, True, "1", np.nan, pd.NA], dtype=object)
    assert per_distinct(values, repr).tolist() == ["1", "1.0", "True", "'1'", "nan", "<NA>"]
    assert normalise_series(values, normalise_country).tolist() == [None] * 6


@pytest.mark.parametrize("dtype", ["object", "string[pyarrow]"])
def test_per_distinct_pair_equals_the_pair_by_pair_map(dtype):
    rng = np.random.default_rng(5)
    zips = [" 94025-1234", "94025", "SW1A 1AA", None, "", "10115"]
    countries = ["US", "GB", "de", None]
    first = pd.Series([zips[i] for i in rng.integers(0, len(zips), 400)], dtype=dtype,
                      index=np.arange(400) * 2, name="postal_code")
    second = pd.Series([countries[i] for i in rng.integers(0, len(countries), 400)], dtype=dtype,
                       index=first.index)
    calls = []

    def counted(postal_code, country):
        calls.append((postal_code, country))
        return normalise_zip(postal_code, country)

    got = per_distinct_pair(first, second, counted)
    expected = pd.Series([normalise_zip(z, c) for z, c in zip(first, second, strict=True)],
                         index=first.index, dtype=object, name="postal_code")
    pd.testing.assert_series_equal(got, expected)
    assert len(calls) <= len(zips) * len(countries)
    mixed = pd.Series([1, 1.0, True, "1", np.nan, pd.NA], dtype=object)
    assert per_distinct_pair(mixed, mixed, lambda a, b: repr(a)).tolist() == [
        "1", "1.0", "True", "'1'", "None", "None"]  # missing markers arrive as None
    with pytest.raises(ValueError, match="same length"):
        per_distinct_pair(mixed, mixed.iloc[:2], repr)


def test_email_with_any_unicode_whitespace_inside_is_rejected():
    spaces = [chr(c) for c in range(0x3100) if chr(c).isspace()]  # all of them are below 0x3100
    assert len(spaces) > 20
    assert all(normalise_email(f"a{ch}b@example.com") is None for ch in spaces)
    assert normalise_email("a\u200bb@example.com") == "a\u200bb@example.com"  # not whitespace
