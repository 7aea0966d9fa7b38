"""Realistic contact details for sample users: names, e-mails, phones, cities, postal codes.

Vectorised: strings are assembled with pyarrow compute kernels and byte matrices, so a
million users take about a second. Phones are nationally formatted numbers that
``phonenumbers.parse(phone, country)`` accepts and ``is_valid_number`` confirms; see
:func:`phone_numbers`.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import PhoneNumberFormat, PhoneNumberType

logger = logging.getLogger(__name__)

COUNTRIES: tuple[str, ...] = ("US", "GB", "DE", "FR", "NL", "ES")
COUNTRY_WEIGHTS: tuple[float, ...] = (0.30, 0.18, 0.18, 0.14, 0.08, 0.12)

EMAIL_DOMAINS: tuple[str, ...] = ("example.com", "example.org", "example.net")
EMAIL_DOMAIN_WEIGHTS: tuple[float, ...] = (0.60, 0.25, 0.15)
EMAIL_UPPERCASE_RATE = 0.03
"""Share of e-mails written all upper case (exercises normalisation)."""
EMAIL_WHITESPACE_RATE = 0.03
"""Share of e-mails with leading and/or trailing spaces (exercises normalisation)."""

PHONE_VARIED_DIGITS = 6
"""Trailing digits of the example number that vary per user (fewer for short numbers)."""

_FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "US": ("James", "Mary", "Michael", "Patricia", "Robert", "Jennifer", "John", "Linda",
           "David", "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica",
           "Thomas", "Sarah", "Christopher", "Karen", "Daniel", "Emily", "Matthew", "Ashley"),
    "GB": ("Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Noah", "Mia", "Jack", "Ivy",
           "Leo", "Lily", "Arthur", "Isabella", "Muhammad", "Rosie", "Oscar", "Sophia",
           "Charlie", "Grace"),
    "DE": ("Anna", "Lukas", "Emma", "Leon", "Mia", "Finn", "Hannah", "Jonas", "Sophie", "Paul",
           "Lena", "Felix", "Marie", "Elias", "Lea", "Maximilian", "Laura", "Jürgen",
           "Katharina", "Tobias"),
    "FR": ("Gabriel", "Louise", "Léo", "Jade", "Raphaël", "Ambre", "Arthur", "Alice", "Louis",
           "Emma", "Jules", "Chloé", "Adam", "Léa", "Lucas", "Manon", "Hugo", "Camille", "Théo",
           "Inès"),
    "NL": ("Daan", "Emma", "Sem", "Julia", "Lucas", "Mila", "Levi", "Tess", "Finn", "Sophie",
           "Milan", "Zoë", "Noah", "Sara", "Luuk", "Anna", "Bram", "Eva", "Jesse", "Lotte"),
    "ES": ("Lucía", "Hugo", "Sofía", "Martín", "María", "Pablo", "Martina", "Daniel", "Paula",
           "Alejandro", "Julia", "Mateo", "Valeria", "Leo", "Emma", "Manuel", "Carmen",
           "Javier", "Elena", "Álvaro"),
}
_LAST_NAMES: dict[str, tuple[str, ...]] = {
    "US": ("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
           "Rodriguez", "Martinez", "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas",
           "Taylor", "Moore", "Jackson", "Martin", "Lee"),
    "GB": ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
           "Patel", "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts",
           "Green", "Hall", "Wood", "Clarke"),
    "DE": ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
           "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf",
           "Schröder", "Neumann", "Schwarz", "Zimmermann"),
    "FR": ("Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois",
           "Moreau", "Laurent", "Simon", "Michel", "Lefèvre", "Leroy", "Roux", "David",
           "Bertrand", "Morel", "Fournier", "Girard"),
    "NL": ("de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Janssen",
           "Visser", "Smit", "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters",
           "Hendriks", "van Leeuwen", "Dekker", "Brouwer"),
    "ES": ("García", "Rodríguez", "González", "Fernández", "López", "Martínez", "Sánchez",
           "Pérez", "Gómez", "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno",
           "Muñoz", "Álvarez", "Romero", "Alonso", "Gutiérrez"),
}
# city, postal code pattern: '#' any digit, '%' digit 1-9, '@' letter
_CITIES: dict[str, tuple[tuple[str, str], ...]] = {
    "US": (("New York", "100##"), ("Los Angeles", "900##"), ("Chicago", "606##"),
           ("Houston", "770##"), ("Phoenix", "850##"), ("Seattle", "981##"),
           ("Boston", "021##"), ("Denver", "802##")),
    "GB": (("London", "E% #@@"), ("Manchester", "M% #@@"), ("Birmingham", "B% #@@"),
           ("Leeds", "LS% #@@"), ("Glasgow", "G% #@@"), ("Bristol", "BS% #@@")),
    "DE": (("Berlin", "10###"), ("Hamburg", "20###"), ("München", "80###"), ("Köln", "50###"),
           ("Frankfurt am Main", "60###"), ("Stuttgart", "70###"), ("Leipzig", "04###"),
           ("Düsseldorf", "40###")),
    "FR": (("Paris", "750##"), ("Lyon", "6900%"), ("Marseille", "130##"),
           ("Toulouse", "310##"), ("Nice", "060##"), ("Bordeaux", "330##"),
           ("Nantes", "440##"), ("Lille", "590##")),
    "NL": (("Amsterdam", "10## @@"), ("Rotterdam", "30## @@"), ("Den Haag", "25## @@"),
           ("Utrecht", "35## @@"), ("Eindhoven", "56## @@"), ("Groningen", "97## @@")),
    "ES": (("Madrid", "280##"), ("Barcelona", "080##"), ("Valencia", "460##"),
           ("Sevilla", "410##"), ("Zaragoza", "500##"), ("Málaga", "290##"),
           ("Bilbao", "480##")),
}
_POSTAL_LETTERS = np.frombuffer(b"ABDEGHJLNPRTWXZ", dtype="uint8")


@dataclass(frozen=True)
class Contacts:
    """Contact columns of the users table, one entry per user.

    Held as pyarrow string arrays (compact UTF-8; numpy's fixed-width UTF-32 strings would
    take several times the memory at a million users). Select rows with ``.take``.
    """

    email: pa.Array
    phone: pa.Array
    first_name: pa.Array
    last_name: pa.Array
    country: pa.Array
    city: pa.Array
    postal_code: pa.Array


def _ascii_handle(name: str) -> str:
    """``"van den Berg"`` -> ``"vandenBerg"``, ``"Lefèvre"`` -> ``"Lefevre"`` (for e-mails)."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return "".join(plain.split())


def _pick_per_country(
    country: np.ndarray, lists: dict[str, tuple], rng: np.random.Generator, weighted: bool
) -> np.ndarray:
    """Index into the concatenation of ``lists[c]`` (in COUNTRIES order) per user."""
    sizes = np.array([len(lists[c]) for c in COUNTRIES])
    offsets = np.r_[0, np.cumsum(sizes)[:-1]]
    u = rng.random(country.size)
    if not weighted:
        return offsets[country] + np.minimum((u * sizes[country]).astype("int64"),
                                             sizes[country] - 1)
    # Zipf-like: the first entries (largest cities) are the most common
    out = np.empty(country.size, dtype="int64")
    for c in range(len(COUNTRIES)):
        weights = 1.0 / (np.arange(sizes[c]) + 1.0) ** 0.8
        cdf = np.cumsum(weights) / weights.sum()
        mask = country == c
        out[mask] = offsets[c] + np.minimum(np.searchsorted(cdf, u[mask], side="right"),
                                            sizes[c] - 1)
    return out


def _fill_pattern(pattern: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` ASCII byte strings following ``pattern`` ('#' digit, '%' 1-9, '@' letter)."""
    template = np.frombuffer(pattern.encode("ascii"), dtype="uint8")
    matrix = np.tile(template, (n, 1))
    for pos, ch in enumerate(pattern):
        if ch == "#":
            matrix[:, pos] = ord("0") + rng.integers(0, 10, n)
        elif ch == "%":
            matrix[:, pos] = ord("1") + rng.integers(0, 9, n)
        elif ch == "@":
            matrix[:, pos] = _POSTAL_LETTERS[rng.integers(0, _POSTAL_LETTERS.size, n)]
    return np.ascontiguousarray(matrix).view(f"S{len(pattern)}")[:, 0]


def _is_valid_phone(text: str, region: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(text, region))
    except phonenumbers.NumberParseException:
        return False


@dataclass(frozen=True)
class _PhoneScheme:
    region: str
    example: str
    digit_positions: tuple[int, ...]  # positions in ``example`` of the varied digits
    checked: bool  # every variant of those digits was found valid by the probe


def _with_digits(text: str, positions: tuple[int, ...], digits: str) -> str:
    chars = list(text)
    for pos, digit in zip(positions, digits, strict=True):
        chars[pos] = digit
    return "".join(chars)


def _phone_scheme(region: str, rng: np.random.Generator) -> _PhoneScheme:
    """The region's example mobile number and which trailing digits may vary.

    The probe checks with ``phonenumbers`` every value of the last two varied digits, every
    single-digit change and 100 random full variants. When all pass, generated
    numbers are trusted; otherwise each generated number is checked (slow path).
    """
    example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    text = phonenumbers.format_number(example, PhoneNumberFormat.NATIONAL)
    digits = [i for i, ch in enumerate(text) if ch.isdigit()]
    n_varied = min(PHONE_VARIED_DIGITS, len(str(example.national_number)) - 3)
    positions = tuple(digits[-n_varied:])
    base = "".join(text[p] for p in positions)
    tail = min(2, n_varied)
    probes = {base[: n_varied - tail] + f"{v:0{tail}d}" for v in range(10**tail)}
    for p in range(n_varied):
        probes.update(base[:p] + str(d) + base[p + 1 :] for d in range(10))
    probes.update("".join(map(str, rng.integers(0, 10, n_varied))) for _ in range(100))
    checked = all(
        _is_valid_phone(_with_digits(text, positions, p), region) for p in sorted(probes)
    )
    if not checked:
        logger.warning("phone scheme for %s failed its probe; checking every number", region)
    return _PhoneScheme(region=region, example=text, digit_positions=positions, checked=checked)


def phone_numbers(country: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Nationally formatted, valid mobile numbers, unique per country up to 10**6 users.

    Each country's ``phonenumbers`` example mobile number is the template; its last (up
    to) six digits are replaced by ``(rank * 7654321 + offset) mod 10**k`` where ``rank``
    counts the country's users, so numbers are distinct and look random. A number that fails
    ``is_valid_number`` (only checked one by one when the template probe failed) falls back
    to the example number itself.

    Parameters
    ----------
    country : numpy.ndarray of int
        Index into :data:`COUNTRIES` per user.
    rng : numpy.random.Generator
        Source of the per-country offsets and probe samples.

    Returns
    -------
    pyarrow.Array of str
    """
    out = np.zeros(country.size, dtype="S32")
    for c, region in enumerate(COUNTRIES):
        scheme = _phone_scheme(region, rng)
        idx = np.flatnonzero(country == c)
        k = len(scheme.digit_positions)
        modulus = 10**k
        values = (np.arange(idx.size, dtype="int64") * 7_654_321 + int(rng.integers(modulus)))
        values %= modulus
        template = np.frombuffer(scheme.example.encode("ascii"), dtype="uint8")
        matrix = np.tile(template, (idx.size, 1))
        for j, pos in enumerate(scheme.digit_positions):
            matrix[:, pos] = ord("0") + (values // 10 ** (k - 1 - j)) % 10
        texts = np.ascontiguousarray(matrix).view(f"S{template.size}")[:, 0]
        if not scheme.checked:
            valid = np.array([_is_valid_phone(t.decode("ascii"), region) for t in texts],
                             dtype=bool)
            texts = np.where(valid, texts, scheme.example.encode("ascii"))
        out[idx] = texts
    return pa.array(out, type=pa.binary()).cast(pa.string())


def build_contacts(n_users: int, rng: np.random.Generator) -> Contacts:
    """Generate contact details for ``n_users`` users.

    E-mails look like ``"Anna.Schmidt42@example.com"`` and are unique per user even after
    trimming and lower-casing (the number is a per-user permutation); a few are upper case
    or carry surrounding spaces.

    Parameters
    ----------
    n_users : int
        Number of users.
    rng : numpy.random.Generator
        Source of randomness (the caller seeds it).

    Returns
    -------
    Contacts
    """
    country = rng.choice(len(COUNTRIES), size=n_users, p=np.asarray(COUNTRY_WEIGHTS))
    firsts = [n for c in COUNTRIES for n in _FIRST_NAMES[c]]
    lasts = [n for c in COUNTRIES for n in _LAST_NAMES[c]]
    fi = pa.array(_pick_per_country(country, _FIRST_NAMES, rng, weighted=False))
    li = pa.array(_pick_per_country(country, _LAST_NAMES, rng, weighted=False))

    number = pc.cast(pa.array(rng.permutation(n_users) + 1), pa.string())
    domain = pa.array(EMAIL_DOMAINS).take(pa.array(
        rng.choice(len(EMAIL_DOMAINS), size=n_users, p=np.asarray(EMAIL_DOMAIN_WEIGHTS))
    ))
    email = pc.binary_join_element_wise(
        pa.array([_ascii_handle(n) for n in firsts]).take(fi), ".",
        pa.array([_ascii_handle(n) for n in lasts]).take(li), number, "@", domain,
        "",  # separator
    )
    u = rng.random(n_users)
    side = rng.integers(0, 3, n_users)
    upper = u < EMAIL_UPPERCASE_RATE
    spaced = (u >= EMAIL_UPPERCASE_RATE) & (u < EMAIL_UPPERCASE_RATE + EMAIL_WHITESPACE_RATE)
    email = pc.if_else(pa.array(upper), pc.utf8_upper(email), email)
    email = pc.if_else(pa.array(spaced & (side != 1)),
                       pc.binary_join_element_wise(" ", email, ""), email)
    email = pc.if_else(pa.array(spaced & (side != 0)),
                       pc.binary_join_element_wise(email, "  ", ""), email)

    city_pairs = [pair for c in COUNTRIES for pair in _CITIES[c]]
    ci = _pick_per_country(country, _CITIES, rng, weighted=True)
    postal = np.zeros(n_users, dtype="S16")
    for j, (_, pattern) in enumerate(city_pairs):
        mask = ci == j
        postal[mask] = _fill_pattern(pattern, int(mask.sum()), rng)

    return Contacts(
        email=email,
        phone=phone_numbers(country, rng),
        first_name=pa.array(firsts, type=pa.string()).take(fi),
        last_name=pa.array(lasts, type=pa.string()).take(li),
        country=pa.array(COUNTRIES, type=pa.string()).take(pa.array(country)),
        city=pa.array([city for city, _ in city_pairs], type=pa.string()).take(pa.array(ci)),
        postal_code=pa.array(postal, type=pa.binary()).cast(pa.string()),
    )
