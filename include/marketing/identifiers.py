"""Normalise and hash customer identifiers the way ad platforms expect them.

Google Customer Match and Meta Custom Audiences match on the SHA-256 of a *normalised*
identifier: e-mails trimmed and lower-cased; phones in E.164 for Google (``+14155550123``) and
as digits only, country code included, for Meta (``14155550123``). Hashing an un-normalised
value silently matches nobody, so normalisation and hashing live together here.

Parsing phones is delegated to ``phonenumbers`` (Google's libphonenumber), never to a regex.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Iterable
from typing import Literal

import numpy as np
import pandas as pd
import phonenumbers

logger = logging.getLogger(__name__)

PhoneStyle = Literal["e164", "digits"]
PHONE_STYLES: tuple[str, ...] = ("e164", "digits")
_WHITESPACE = re.compile(r"\s")
"""Any character ``str.isspace`` calls whitespace (``re``'s ``\\s`` on str uses the same test)."""
_PARSED: dict[tuple[str, str | None], str | None] = {}
"""(raw number, region) -> E.164 or None: the parses since the last :func:`seed_parsed_phones`
(which replaces the rest with the previous run's), so every ad channel of a run parses a number
once and a long-lived process holds at most two runs' numbers."""
_USED: set[tuple[str, str | None]] = set()
"""Keys looked up since the last :func:`seed_parsed_phones` (what a run needs next time)."""


def _is_missing(value: object) -> bool:
    """True for None, NaN, pd.NA and NaT (scalar missing markers pandas may hand us)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, str):  # the common case, answered without pandas (3M calls a run)
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # list-likes are not scalars: not "missing"
        return False


def normalise_email(email: object) -> str | None:
    """Trim and lower-case an e-mail address.

    Parameters
    ----------
    email : object
        Raw address; ``None``/NaN are accepted.

    Returns
    -------
    str or None
        The normalised address, or ``None`` when it is missing, empty, contains whitespace
        inside, or is not of the form ``local@domain`` with exactly one ``@``.
    """
    if _is_missing(email):
        return None
    value = str(email).strip().lower()
    if not value or _WHITESPACE.search(value):
        return None
    local, at, domain = value.partition("@")
    if not at or not local or not domain or "@" in domain:
        return None
    return value


def normalise_phone(phone: object, country: object, style: PhoneStyle = "e164") -> str | None:
    """Parse a phone number and format it for an ad platform.

    Parameters
    ----------
    phone : object
        Raw number in national (``"020 7946 0958"``) or international (``"+44 ..."``) format.
    country : object
        ISO-3166 alpha-2 region used to read national numbers (case-insensitive); may be
        missing when the number carries a ``+`` country code.
    style : {"e164", "digits"}
        ``"e164"`` gives ``"+442079460958"`` (Google); ``"digits"`` gives ``"442079460958"``
        (Meta).

    Returns
    -------
    str or None
        The formatted number, or ``None`` when it is missing, ``phonenumbers`` cannot parse it,
        or it is not a possible number.

    Raises
    ------
    ValueError
        If ``style`` is not one of ``PHONE_STYLES``.
    """
    if style not in PHONE_STYLES:
        raise ValueError(f"style must be one of {PHONE_STYLES}, got {style!r}")
    if _is_missing(phone):
        return None
    region = None if _is_missing(country) else str(country).strip().upper() or None
    e164 = _e164(str(phone).strip(), region)
    if e164 is None:
        return None
    return e164 if style == "e164" else e164.lstrip("+")


def _e164(phone: str, region: str | None) -> str | None:
    """E.164 form of a possible number, else None (cached: parsing dominates publishing)."""
    key = (phone, region)
    _USED.add(key)
    try:
        return _PARSED[key]
    except KeyError:
        value = _PARSED[key] = _parse_e164(phone, region)
        return value


def seed_parsed_phones(parsed: Iterable[tuple[str, str | None, str | None]]) -> None:
    """Add ``(raw number, region, E.164 or None)`` parses (e.g. the previous run's, see
    :func:`parsed_phones_used`) and start recording the numbers used from now on.

    Parsing with libphonenumber dominates publishing (177k numbers: ~6 s); a daily run meets
    mostly the numbers it met the day before. Entries must come from :func:`parsed_phones_used`
    of the same libphonenumber version (the publish step checks). Parses held from before are
    dropped first: the cache stays bounded in a long-lived process (a bench, `airflow dags
    test`), and numbers of users erased since leave memory with them.
    """
    _USED.clear()
    _PARSED.clear()
    for phone, region, e164 in parsed:
        _PARSED[(phone, region)] = e164


def parsed_phones_used() -> list[tuple[str, str | None, str | None]]:
    """The ``(raw number, region, E.164 or None)`` looked up since :func:`seed_parsed_phones`,
    sorted."""
    return _in_order((phone, region, _PARSED[(phone, region)]) for phone, region in _USED)


def merge_parsed_phones(
    used: Iterable[list[tuple[str, str | None, str | None]]],
) -> list[tuple[str, str | None, str | None]]:
    """The union of several :func:`parsed_phones_used` lists (e.g. one per worker process),
    in the same order."""
    return _in_order(set().union(*used))


def _in_order(parses: Iterable[tuple[str, str | None, str | None]],
              ) -> list[tuple[str, str | None, str | None]]:
    return sorted(parses, key=lambda row: (row[0], row[1] or ""))


def _parse_e164(phone: str, region: str | None) -> str | None:
    try:
        parsed = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def sha256_hex(value: str | None) -> str | None:
    """Lower-case hex SHA-256 of the UTF-8 bytes of ``value``; ``None`` for ``None``.

    Examples
    --------
    >>> sha256_hex("test@example.com")
    '973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b'
    """
    if value is None:
        return None
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def scalars(values: pd.Series) -> np.ndarray:
    """The values as Python objects, every missing marker as ``None``: iterating this is
    several times faster than iterating an Arrow-backed Series element by element."""
    return values.to_numpy(dtype=object, na_value=None)


def normalise_emails(emails: pd.Series) -> pd.Series:
    """``normalise_email`` over a Series; missing results are ``None`` (object dtype)."""
    return pd.Series(
        [normalise_email(v) for v in scalars(emails)], index=emails.index, dtype=object,
        name=emails.name,
    )


def normalise_phones(
    phones: pd.Series, countries: pd.Series, style: PhoneStyle = "e164"
) -> pd.Series:
    """``normalise_phone`` over aligned Series of numbers and countries (object dtype).

    Each distinct number is parsed once per process (``_e164``'s cache, seeded across runs
    by the publish step), since parsing dominates the cost.
    """
    if len(phones) != len(countries):
        raise ValueError(
            f"phones and countries must have the same length, got {len(phones)} and {len(countries)}"
        )
    out = [normalise_phone(phone, country, style)
           for phone, country in zip(scalars(phones), scalars(countries), strict=True)]
    return pd.Series(out, index=phones.index, dtype=object, name=phones.name)


def per_distinct(values: pd.Series, function) -> pd.Series:
    """``function`` of every value, called once per distinct value (object dtype, same index).

    Names, cities, countries and postal codes repeat across a million users: the Python-level
    normalisers and hashes run over the distinct values only (``pandas.factorize``), then the
    results are spread back. Missing values (None, NaN, pd.NA) give ``function(None)``.
    ``function`` must be pure (its result depends on its argument only). Values other than
    strings are mapped one by one (``factorize`` would merge ``1``, ``1.0`` and ``True``).
    """
    if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        return pd.Series([function(v) for v in values],
                         index=values.index, dtype=object, name=values.name)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    results = np.empty(len(uniques) + 1, dtype=object)
    results[:-1] = [function(value) for value in uniques]
    results[-1] = function(None)  # code -1 (missing) takes the last slot
    return pd.Series(results[codes], index=values.index, dtype=object, name=values.name)


def per_distinct_pair(first: pd.Series, second: pd.Series, function) -> pd.Series:
    """``function(a, b)`` of aligned values, called once per distinct pair (object dtype,
    ``first``'s index); missing values are passed as ``None``. ``function`` must be pure."""
    if len(first) != len(second):
        raise ValueError(f"the two Series must have the same length, got {len(first)} and "
                         f"{len(second)}")
    results: dict[tuple[object, ...], object] = {}
    out = []
    for a, b in zip(scalars(first), scalars(second), strict=True):
        key = (type(a), a, type(b), b)  # 1, 1.0 and True are equal keys otherwise
        if key not in results:
            results[key] = function(a, b)
        out.append(results[key])
    return pd.Series(out, index=first.index, dtype=object, name=first.name)


def sha256_hex_series(values: pd.Series) -> pd.Series:
    """``sha256_hex`` over a Series of normalised strings; missing stays ``None``."""
    return per_distinct(values, lambda v: None if _is_missing(v) else sha256_hex(str(v)))


def _fold_text(value: object) -> str | None:
    """NFC-normalised, lower-cased text with every non-letter/non-digit removed (or ``None``)."""
    if _is_missing(value):
        return None
    text = unicodedata.normalize("NFC", str(value)).lower()
    kept = "".join(ch for ch in text if ch.isalnum())
    return kept or None


def normalise_name(name: object) -> str | None:
    """Lower-case a first or last name and drop punctuation and whitespace.

    Meta: "lowercase only with no punctuation; special characters in UTF-8" (``"Valéry"`` ->
    ``"valéry"``). Google Customer Match: lower-case, no spaces before, after or inside. Both
    platforms therefore hash the same form; accents are kept (NFC), not transliterated.

    Examples
    --------
    >>> normalise_name(" Mary-Ann O'Neil ")
    'maryannoneil'
    """
    return _fold_text(name)


def normalise_city(city: object) -> str | None:
    """Meta ``CT``: lower-case, no punctuation, no spaces (``"Menlo Park"`` -> ``"menlopark"``)."""
    return _fold_text(city)


def normalise_country(country: object) -> str | None:
    """ISO-3166 alpha-2 code in upper case, or ``None`` when it is not two letters."""
    if _is_missing(country):
        return None
    value = str(country).strip().upper()
    return value if len(value) == 2 and value.isascii() and value.isalpha() else None


def normalise_zip(postal_code: object, country: object) -> str | None:
    """A postal code as both platforms expect it.

    Lower-cased with spaces and dashes removed (Meta ``ZIP``); US codes keep their first five
    digits only (both platforms match on the 5-digit ZIP). Google takes the result unhashed.

    Examples
    --------
    >>> normalise_zip("94025-1234", "US"), normalise_zip("SW1A 1AA", "GB")
    ('94025', 'sw1a1aa')
    """
    if _is_missing(postal_code):
        return None
    value = "".join(ch for ch in str(postal_code).strip().lower() if ch not in " -")
    if normalise_country(country) == "US":
        value = value[:5] if len(value) >= 5 and value[:5].isdigit() else ""
    return value if value and value.isalnum() else None


def normalise_series(values: pd.Series, normalise) -> pd.Series:
    """Apply a one-argument normaliser over a Series (once per distinct value, see
    :func:`per_distinct`); missing results are ``None``."""
    return per_distinct(values, normalise)
