"""Finding the line of a key in TOML text (``tomllib`` reports no lines for values)."""

from __future__ import annotations

import re
import tomllib
from typing import TypeAlias

# --------------------------------------------------------------------------- line finding

_KEYPART = r'(?:"(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z0-9_-]+)'
_DOTTED = rf"{_KEYPART}(?:\s*\.\s*{_KEYPART})*"
_HEADER_RE = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_KEY_RE = re.compile(rf"^\s*({_DOTTED})\s*=")
_KEYPART_RE = re.compile(_KEYPART)


def _norm_key(dotted: str) -> str:
    return ".".join(_key_parts(dotted))


def _key_parts(dotted: str) -> list[str]:
    parts = []
    for m in _KEYPART_RE.finditer(dotted):
        p = m.group(0)
        if p[:1] == "'":
            p = p[1:-1]
        elif p[:1] == '"':
            p = _basic_string(p)
        parts.append(p)
    return parts


def _basic_string(quoted: str) -> str:
    """A double-quoted key as tomllib reads it (escapes such as \\u001e decoded)."""
    try:
        value = tomllib.loads(f"k = {quoted}")["k"]
    except tomllib.TOMLDecodeError:
        return quoted[1:-1]
    return str(value)


#: a run of digits this long is a number tomllib cannot read (int() refuses it)
_LONG_NUMBER_RE = re.compile(r"[0-9_]{4000,}")


def long_number(text: str) -> tuple[int | None, tuple[str, ...]]:
    """The line of the first number of thousands of digits in ``text``, and the key set
    on that line (() if none is): what tomllib fails on without saying where."""
    for lineno, line in enumerate(text.split("\n"), 1):
        if _LONG_NUMBER_RE.search(line):
            km = _KEY_RE.match(line)
            return lineno, tuple(_key_parts(km.group(1))) if km else ()
    return None, ()


PathPart: TypeAlias = str | int
KeyPath: TypeAlias = tuple[PathPart, ...]


class _LineIndex:
    """Where each table header and key sits in the TOML text (a heuristic, good enough).

    Tables are identified by their dotted name and, for arrays of tables, by their
    occurrence (``[[multipaths]]`` number 0, 1, ...). Lines inside multi-line strings are
    skipped so that text looking like ``key =`` in a string does not count.
    """

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")  # as tomllib counts lines
        self.headers: dict[tuple[str, int], int] = {("", 0): 0}
        self.keys: dict[tuple[str, int], dict[str, int]] = {("", 0): {}}
        counts: dict[str, int] = {}
        current = ("", 0)
        in_string: str | None = None
        for lineno, line in enumerate(self.lines, 1):
            if in_string is not None:
                if line.count(in_string) % 2 == 1:
                    in_string = None
                continue
            hm = _HEADER_RE.match(line)
            if hm:
                name = _norm_key(hm.group(2))
                occurrence = 0
                if hm.group(1) == "[[":
                    occurrence = counts.get(name, 0)
                    counts[name] = occurrence + 1
                current = (name, occurrence)
                self.headers.setdefault(current, lineno)
                self.keys.setdefault(current, {})
                continue
            km = _KEY_RE.match(line)
            rest = line
            if km:
                self.keys[current].setdefault(_norm_key(km.group(1)), lineno)
                rest = line[km.end() :]
            for delim in ('"""', "'''"):  # a multi-line string opens (list items too)
                if rest.count(delim) % 2 == 1:
                    in_string = delim
                    break

    def lookup(self, path: KeyPath, needle: str | None = None) -> int | None:
        """The line of ``path`` (e.g. ("multipaths", 1, "alias")), or of its table."""
        fallback: int | None = None
        for k in range(len(path), -1, -1):
            head, rest = path[:k], path[k:]
            if head and isinstance(head[-1], int):
                table = (".".join(str(p) for p in head if isinstance(p, str)), head[-1])
            else:
                table = (".".join(str(p) for p in head if isinstance(p, str)), 0)
            if table not in self.headers:
                continue
            if not rest:
                if fallback is None and table != ("", 0):
                    fallback = self.headers[table]
                continue
            key_parts: list[str] = []
            for p in rest:
                if isinstance(p, int):
                    break
                key_parts.append(p)
            if not key_parts:
                continue
            line = self._key_line(table, key_parts)
            if line is not None:
                return self._refine(line, needle)
            if fallback is None and table != ("", 0):
                fallback = self.headers[table]
        return fallback

    def _key_line(self, table: tuple[str, int], key_parts: list[str]) -> int | None:
        """The line of a key in ``table``, or of the nearest key above it: a key inside
        an inline table (``defaults = {a = 1}``) sits on the line of the table's key."""
        keys = self.keys[table]
        for n in range(len(key_parts), 0, -1):
            line = keys.get(".".join(key_parts[:n]))
            if line is not None:
                return line
        return None

    def _refine(self, line: int, needle: str | None) -> int:
        """For a list element: the line, from the key's on, that holds the element."""
        if not needle:
            return line
        for i in range(line - 1, len(self.lines)):
            text = self.lines[i]
            if i > line - 1 and (_KEY_RE.match(text) or _HEADER_RE.match(text)):
                break
            if needle in text:
                return i + 1
        return line
