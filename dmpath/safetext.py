"""Untrusted text made safe for one line on a terminal or in a log (no dependencies:
``dmpathd``'s start-up errors use it as well as ``mpathctl``'s views)."""

from __future__ import annotations

import unicodedata

_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    if ch in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def sanitize(value: object) -> str:
    """A string safe to put on a terminal: control characters shown as escapes.

    Escaped: C0/C1 controls (ESC would start a terminal sequence, BEL rings, a newline
    would forge a line), line/paragraph separators, bidi overrides (they can make ``sdb``
    look like another name) and lone surrogates (undecodable sysfs bytes; they would crash
    the output encoder). Everything else, RTL letters and emoji included, is kept as is.
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable() and text.isascii():
        return text
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cs", "Zl", "Zp") or ch in _BIDI_CONTROLS:
            out.append(_escape_char(ch))
        else:
            out.append(ch)
    return "".join(out)
