"""RFC 8785 JSON Canonicalization Scheme (JCS).

Strings are escaped as the standard library's encoder escapes them with ``ensure_ascii=False``
(RFC 8785 §3.2.2.2 asks for exactly that escaping; orjson's is the same), object members are
sorted by their UTF-16 code units (§3.2.3), numbers are serialised as ECMAScript does
(§3.2.2.3). Input must be I-JSON (RFC 7493): integers within ±(2**53 − 1), finite numbers, no
lone surrogates.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from stellaops_signer.domain.jose import JsonValue

_MAX_SAFE_INTEGER = 2**53 - 1
_encode_string: Callable[[str], str] = json.encoder.encode_basestring


class CanonicalizationError(ValueError):
    """The value cannot be canonicalised (not I-JSON)."""


def canonicalize(value: JsonValue) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of ``value``; raises CanonicalizationError.

    Documents without floats, out-of-range integers or object keys beyond U+D7FF (nearly
    every SBOM, report and provenance) are serialised by orjson with sorted keys, where JCS and
    code-point order agree (decision 0020); the rest take the exact, slower path.
    """
    if _is_plain(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # a lone surrogate, or nesting beyond orjson's: the exact path says which
            pass
    parts: list[str] = []
    _write(value, parts.append)
    text = "".join(parts)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise CanonicalizationError("string is not valid Unicode") from exc


def _is_plain(value: JsonValue) -> bool:
    """True when code-point key order and Python's integer/string output equal JCS's."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            for key in item:
                if type(key) is not str or (not key.isascii() and max(key) > "\ud7ff"):
                    return False
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is int:
            if not -_MAX_SAFE_INTEGER <= item <= _MAX_SAFE_INTEGER:
                return False
        elif kind is not str and kind is not bool and item is not None:
            return False
    return True


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _write(value: JsonValue, out: Callable[[str], object]) -> None:
    if isinstance(value, str):
        out(_encode_string(value))
    elif value is True:
        out("true")
    elif value is False:
        out("false")
    elif value is None:
        out("null")
    elif isinstance(value, int):
        if not -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
            raise CanonicalizationError("integer outside the I-JSON range")
        out(str(value))
    elif isinstance(value, float):
        out(format_number(value))
    elif isinstance(value, dict):
        keys = list(value)
        for key in keys:
            if not isinstance(key, str):
                raise CanonicalizationError("object keys must be strings")
        # §3.2.3: sort by UTF-16 code units; code-point order differs only beyond the BMP.
        if any(max(key, default="\0") > "\ud7ff" for key in keys):
            keys.sort(key=_utf16_key)
        else:
            keys.sort()
        out("{")
        first = True
        for key in keys:
            if not first:
                out(",")
            first = False
            out(_encode_string(key))
            out(":")
            _write(value[key], out)
        out("}")
    elif isinstance(value, (list, tuple)):
        out("[")
        first = True
        for item in value:
            if not first:
                out(",")
            first = False
            _write(item, out)
        out("]")
    else:
        raise CanonicalizationError(f"type {type(value).__name__} is not JSON")


def format_number(value: float) -> str:
    """ECMAScript Number.prototype.toString for a finite double (ECMA-262 §7.1.12.1)."""
    if not math.isfinite(value):
        raise CanonicalizationError("NaN and Infinity are not JSON")
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 2**53:  # exact, and repr would add ".0"
        return str(int(value))
    sign = "-" if value < 0 else ""
    # repr gives the shortest round-tripping digits, as ECMAScript requires.
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    exponent = (int(exp_text) if exp_text else 0) + len(int_part.lstrip("0") or "")
    if not int_part.lstrip("0"):  # 0.00123 → leading zeros of the fraction shift the exponent
        exponent = (int(exp_text) if exp_text else 0) - (len(frac_part) - len(frac_part.lstrip("0")))
    digits = digits.rstrip("0") or "0"
    k, n = len(digits), exponent  # value = 0.d1d2…dk × 10^n
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    exp = n - 1
    exp_str = f"e+{exp}" if exp > 0 else f"e-{-exp}"
    if k == 1:
        return sign + digits + exp_str
    return sign + digits[0] + "." + digits[1:] + exp_str


__all__ = ["CanonicalizationError", "canonicalize", "format_number"]
