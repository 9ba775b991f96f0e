"""RFC 8785 (JCS) canonicalisation, checked against the independent ``rfc8785`` package (spec §5.5, §8)."""

from __future__ import annotations

import math
import random
import struct
from typing import Any

import pytest
import rfc8785

from stellaops_signer.domain.jcs import CanonicalizationError, canonicalize, format_number

MAX_SAFE_INTEGER = 2**53 - 1
SEED = 8785


# --- hand-picked documents --------------------------------------------------------------------

KNOWN_ANSWERS: list[tuple[str, Any, bytes]] = [
    (
        # RFC 8785 §3.2.2: the example of the whole serialisation (numbers, strings, literals).
        "rfc8785_section_3_2_2_example",
        {
            "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
            "literals": [None, True, False],
        },
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'.encode(),
    ),
    (
        # RFC 8785 §3.2.3: members sorted by UTF-16 code units.
        "rfc8785_section_3_2_3_sorting_example",
        {
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\U0001f600": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis",
        },
        (
            '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
            '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
            '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
        ).encode(),
    ),
    (
        # A non-BMP key (surrogates D83D DE00) sorts before U+FB01 in UTF-16, after it by code point.
        "astral_key_sorts_before_high_bmp_key",
        {"\ufb01": 2, "\U0001f600": 1},
        '{"\U0001f600":1,"\ufb01":2}'.encode(),
    ),
    (
        "control_characters_are_escaped_del_and_solidus_are_not",
        '\x00\x01\x1f\x7f\b\f\n\r\t"\\/',
        b'"\\u0000\\u0001\\u001f\x7f\\b\\f\\n\\r\\t\\"\\\\/"',
    ),
    ("line_separator_is_not_escaped", "a\u2028b\u2029c", '"a\u2028b\u2029c"'.encode()),
    ("empty_containers", {"a": [], "b": {}, "": [{}]}, b'{"":[{}],"a":[],"b":{}}'),
    ("literals", [True, False, None], b"[true,false,null]"),
    (
        "nested_arrays_and_objects",
        {"z": [1, [2, [3, {"y": {"x": []}}]]], "a": {"c": 1, "b": [None]}},
        b'{"a":{"b":[null],"c":1},"z":[1,[2,[3,{"y":{"x":[]}}]]]}',
    ),
    (
        "safe_integer_bounds",
        [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 0],
        b"[9007199254740991,-9007199254740991,0]",
    ),
    ("integral_floats_lose_the_fraction", [1.0, -0.0, 100.0, 1e21], b"[1,0,100,1e+21]"),
    ("tuples_are_arrays", {"t": (1, "x")}, b'{"t":[1,"x"]}'),
]


@pytest.mark.parametrize(
    ("document", "expected"),
    [(d, e) for _, d, e in KNOWN_ANSWERS],
    ids=[name for name, _, _ in KNOWN_ANSWERS],
)
def test_canonical_form_of_hand_picked_documents_is_the_known_answer(document: Any, expected: bytes) -> None:
    assert canonicalize(document) == expected
    assert rfc8785.dumps(document) == expected


# RFC 8785 Appendix B: IEEE 754 bit patterns and their ECMAScript serialisation.
APPENDIX_B = [
    (0x0000000000000000, "0"),
    (0x8000000000000000, "0"),
    (0x0000000000000001, "5e-324"),
    (0x8000000000000001, "-5e-324"),
    (0x7FEFFFFFFFFFFFFF, "1.7976931348623157e+308"),
    (0xFFEFFFFFFFFFFFFF, "-1.7976931348623157e+308"),
    (0x4340000000000000, "9007199254740992"),
    (0xC340000000000000, "-9007199254740992"),
    (0x4430000000000000, "295147905179352830000"),
    (0x44B52D02C7E14AF5, "9.999999999999997e+22"),
    (0x44B52D02C7E14AF6, "1e+23"),
    (0x44B52D02C7E14AF7, "1.0000000000000001e+23"),
    (0x444B1AE4D6E2EF4E, "999999999999999700000"),
    (0x444B1AE4D6E2EF4F, "999999999999999900000"),
    (0x444B1AE4D6E2EF50, "1e+21"),
    (0x3EB0C6F7A0B5ED8C, "9.999999999999997e-7"),
    (0x3EB0C6F7A0B5ED8D, "0.000001"),
    (0x41B3DE4355555553, "333333333.3333332"),
    (0x41B3DE4355555554, "333333333.33333325"),
    (0x41B3DE4355555555, "333333333.3333333"),
    (0x41B3DE4355555556, "333333333.3333334"),
    (0x41B3DE4355555557, "333333333.33333343"),
    (0xBECBF647612F3696, "-0.0000033333333333333333"),
    (0x43143FF3C1CB0959, "1424953923781206.2"),
]


def _double(bits: int) -> float:
    return struct.unpack(">d", bits.to_bytes(8, "big"))[0]


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B, ids=[f"{b:016x}" for b, _ in APPENDIX_B])
def test_number_serialisation_matches_rfc8785_appendix_b(bits: int, expected: str) -> None:
    assert format_number(_double(bits)) == expected
    assert canonicalize([_double(bits)]) == f"[{expected}]".encode()


# --- random documents against rfc8785 ---------------------------------------------------------


def _random_char(rng: random.Random, astral: bool) -> str:
    roll = rng.random()
    if roll < 0.45:
        return chr(rng.randint(0x20, 0x7E))
    if roll < 0.55:
        return chr(rng.randint(0x00, 0x1F))
    if roll < 0.75 or not astral:
        code = rng.randint(0x80, 0xD7FF)
    elif roll < 0.88:
        code = rng.randint(0xE000, 0xFFFF)  # above the surrogates: where UTF-16 and code-point order part
    else:
        code = rng.randint(0x10000, 0x10FFFF)
    return chr(code)


def _random_string(rng: random.Random, astral: bool) -> str:
    return "".join(_random_char(rng, astral) for _ in range(rng.randint(0, 8)))


def _random_float(rng: random.Random) -> float:
    kind = rng.randrange(7)
    if kind == 0:  # any finite bit pattern
        while True:
            value = _double(rng.getrandbits(64))
            if math.isfinite(value):
                return value
    if kind == 1:  # tiny, subnormals included
        return rng.random() * 10.0 ** -rng.randint(300, 323)
    if kind == 2:  # huge
        return rng.random() * 10.0 ** rng.randint(20, 308)
    if kind == 3:  # integers as floats, around the 2**53 and 1e21 boundaries
        return float(
            rng.choice([rng.randint(-(2**60), 2**60), rng.randint(-1000, 1000), 10 ** rng.randint(15, 25)])
        )
    if kind == 4:  # decimal-looking numbers
        return round(rng.uniform(-1e6, 1e6), rng.randint(0, 8))
    if kind == 5:  # around the 1e-6 / 1e21 switch to exponent form
        return rng.uniform(1, 10) * 10.0 ** rng.randint(-9, 24) * rng.choice([1, -1])
    return -rng.random()


def _random_scalar(rng: random.Random, plain: bool) -> Any:
    kind = rng.randrange(5 if plain else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    if kind == 2:
        return rng.randint(-1000, 1000)
    if kind in (3, 4):
        return _random_string(rng, astral=True)
    return _random_float(rng)


def _random_value(rng: random.Random, depth: int, plain: bool) -> Any:
    """A random JSON value; ``plain`` keeps to what the fast path handles (no floats, keys ≤ U+D7FF)."""
    if depth >= 5 or rng.random() < 0.35:
        return _random_scalar(rng, plain)
    if rng.random() < 0.5:
        return [_random_value(rng, depth + 1, plain) for _ in range(rng.randint(0, 5))]
    return {
        _random_string(rng, astral=not plain): _random_value(rng, depth + 1, plain)
        for _ in range(rng.randint(0, 5))
    }


def _random_documents(count: int) -> list[Any]:
    rng = random.Random(SEED)
    return [_random_value(rng, 0, plain=index % 2 == 0) for index in range(count)]


def test_canonical_form_of_random_documents_equals_rfc8785_package() -> None:
    mismatches = [doc for doc in _random_documents(2000) if canonicalize(doc) != rfc8785.dumps(doc)]
    assert mismatches == []


def test_a_document_nested_beyond_orjsons_limit_takes_the_exact_path() -> None:
    """orjson refuses more than 255 levels; such a plain document is canonicalised all the same."""
    document: Any = "leaf"
    for depth in range(300):
        document = {"k": document, "n": depth} if depth % 2 else [document, depth]
    assert canonicalize(document) == rfc8785.dumps(document)


def test_number_serialisation_of_random_doubles_equals_rfc8785_package() -> None:
    rng = random.Random(SEED)
    values: list[float] = []
    while len(values) < 50_000:
        value = _double(rng.getrandbits(64))
        if math.isfinite(value):
            values.append(value)
    values += [_random_float(rng) for _ in range(50_000)]
    mismatches = [(v, format_number(v)) for v in values if format_number(v) != rfc8785.dumps(v).decode()]
    assert mismatches == []


# --- refusals: input that is not I-JSON (RFC 7493) ----------------------------------------------

NOT_I_JSON: list[tuple[str, Any]] = [
    ("nan", math.nan),
    ("infinity", math.inf),
    ("minus_infinity", -math.inf),
    ("integer_2_pow_53", 2**53),
    ("integer_minus_2_pow_53", -(2**53)),
    ("lone_surrogate_in_string", "\ud800"),
    ("lone_surrogate_in_key", {"\ud800": 1}),
    ("non_string_key", {1: "x"}),
    ("set_value", {1, 2}),
    ("bytes_value", b"bytes"),
]


@pytest.mark.parametrize("value", [v for _, v in NOT_I_JSON], ids=[name for name, _ in NOT_I_JSON])
@pytest.mark.parametrize("beside_a_float", [False, True], ids=["alone", "beside_a_float"])
def test_value_that_is_not_i_json_is_refused(value: Any, beside_a_float: bool) -> None:
    document: dict[str, Any] = {"k": [value]}
    if beside_a_float:
        document["f"] = 1.5  # takes the exact (slow) path rather than orjson
    with pytest.raises(CanonicalizationError):
        canonicalize(document)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "infinity", "minus_infinity"])
def test_format_number_refuses_non_finite_numbers(value: float) -> None:
    with pytest.raises(CanonicalizationError):
        format_number(value)
