"""Text of values as Rust formats them, so that error messages match the Rust SDK's word for word.

`rust_float(x)` is Rust's `Display` of an `f64` (`1` for 1.0, `0.00001` for 1e-5, `NaN`, `inf`);
`rust_str_debug(s)` is Rust's `Debug` of a `str` (quoted, with `\\"`, `\\\\`, `\\n`... escapes).
"""

import math


def rust_float(x) -> str:
    """Rust's `format!("{}", x)` of an `f64`: the shortest round-trip digits, never an exponent."""
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    r = repr(x)
    sign = ""
    if r.startswith("-"):
        sign, r = "-", r[1:]
    if "e" in r:
        mant, exp = r.split("e")
        exp = int(exp)
    else:
        mant, exp = r, 0
    whole, _, frac = mant.partition(".")
    digits = whole + frac
    point = len(whole) + exp  # digits before the decimal point
    if point <= 0:
        text = "0." + "0" * (-point) + digits
    elif point >= len(digits):
        text = digits + "0" * (point - len(digits))
    else:
        text = digits[:point] + "." + digits[point:]
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    text = text.lstrip("0") or "0"
    if text.startswith("."):
        text = "0" + text
    return sign + text


_ESCAPES = {"\0": "\\0", "\t": "\\t", "\r": "\\r", "\n": "\\n", "\\": "\\\\", '"': '\\"'}


def rust_str_debug(s: str) -> str:
    """Rust's `format!("{:?}", s)` of a `str` (non-printable characters as `\\u{..}`)."""
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif not ch.isprintable() and ch != " ":
            out.append("\\u{%x}" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
