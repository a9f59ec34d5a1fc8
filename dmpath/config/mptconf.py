"""multipath-tools' ``multipath.conf`` syntax: text in, a tree of sections and settings out.

The syntax, as multipath-tools' own parser reads it (multipath.conf(5), SYNTAX):

* one statement per line: ``keyword value``, ``section {`` or ``}``;
* a value is one word, or one string in double quotes that keeps its spaces and in which
  ``""`` stands for one ``"``;
* outside quotes, ``#`` and ``!`` start a comment that runs to the end of the line;
* ``{`` follows the (sub)section's name on the same line, ``}`` stands alone.

Any keyword followed by ``{`` opens a section, so sections this module has never heard
of are read like the others (the importer says it skips them). Where multipath-tools
only warns and carries on (a value missing, text after it, a quote left open, a ``}``
too many), this parser refuses with ``file:line``: a conversion that silently drops half
a line would carry over something the administrator did not write.

``config_dir`` (``/etc/multipath/conf.d`` unless the main file's ``defaults`` names
another, ``""`` for none) holds drop-ins, ``*.conf`` read in alphabetical order after the
main file, as multipathd reads them. ``parse_mptconf`` is pure; ``read_mptconf`` and
``read_with_config_dir`` do the reading.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from dmpath.errors import ConfigError

DEFAULT_MPT_CONFIG: Final = "/etc/multipath.conf"
DEFAULT_CONFIG_DIR: Final = "/etc/multipath/conf.d"


@dataclass(frozen=True)
class Setting:
    """``keyword value`` and where it was written."""

    keyword: str
    value: str
    source: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class Section:
    """``name { ... }``: its settings and subsections, each in file order.

    The file itself is a section named "" whose subsections are the top-level ones
    (``settings`` holds keywords written outside any section, which no valid file has).
    """

    name: str
    source: str
    line: int
    settings: tuple[Setting, ...] = ()
    sections: tuple[Section, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    def subsections(self, name: str) -> Iterator[Section]:
        return (s for s in self.sections if s.name == name)


_COMMENT: Final = "#!"
_BRACES: Final = "{}"


def _tokens(text: str, source: str, lineno: int) -> list[tuple[str, bool]]:
    """The words of one line, each with whether it was quoted; comments dropped."""
    out: list[tuple[str, bool]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _COMMENT:
            break
        elif ch in _BRACES:
            out.append((ch, False))
            i += 1
        elif ch == '"':
            word: list[str] = []
            i += 1
            while True:
                if i >= n:
                    raise ConfigError(source, "missing closing quote", line=lineno)
                if text[i] == '"':
                    if text[i + 1 : i + 2] == '"':  # "" inside quotes: one quote
                        word.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                word.append(text[i])
                i += 1
            out.append(("".join(word), True))
        else:
            start = i
            while i < n and not (
                text[i].isspace() or text[i] in _COMMENT or text[i] in _BRACES or text[i] == '"'
            ):
                i += 1
            out.append((text[start:i], False))
    return out


@dataclass
class _Open:
    name: str
    line: int
    settings: list[Setting]
    sections: list[Section]


def parse_mptconf(text: str, source: str = "<string>") -> Section:
    """The tree of one multipath.conf file; a ``ConfigError`` names ``source:line``."""
    stack = [_Open("", 0, [], [])]
    for lineno, line in enumerate(text.splitlines(), 1):
        words = _tokens(line, source, lineno)
        if not words:
            continue
        (first, quoted), rest = words[0], words[1:]
        if first == "}" and not quoted:
            if rest:
                raise ConfigError(source, "'}' must stand alone on its line", line=lineno)
            if len(stack) == 1:
                raise ConfigError(source, "'}' closes no section", line=lineno)
            done = stack.pop()
            stack[-1].sections.append(
                Section(
                    done.name, source, done.line, tuple(done.settings), tuple(done.sections)
                )
            )
            continue
        if quoted or first in _BRACES:
            raise ConfigError(
                source, f"a line must start with a keyword, not {first!r}", line=lineno
            )
        if rest and rest[0] == ("{", False):
            if len(rest) > 1:
                raise ConfigError(
                    source, f"text after '{first} {{': {rest[1][0]!r}", line=lineno
                )
            stack.append(_Open(first, lineno, [], []))
            continue
        if not rest:
            raise ConfigError(
                source,
                f"{first}: no value (a section's '{{' goes on the same line as its name)",
                line=lineno,
            )
        if len(rest) > 1 or (rest[0][0] in _BRACES and not rest[0][1]):
            shown = rest[1][0] if len(rest) > 1 else rest[0][0]
            raise ConfigError(
                source,
                f"{first}: text after the value: {shown!r} (quote a value that has spaces)",
                line=lineno,
            )
        stack[-1].settings.append(Setting(first, rest[0][0], source, lineno))
    if len(stack) > 1:
        top = stack[-1]
        raise ConfigError(source, f"section {top.name!r} is never closed", line=top.line)
    root = stack[0]
    return Section("", source, 0, tuple(root.settings), tuple(root.sections))


# --------------------------------------------------------------------------- reading


def _read_text(path: str) -> str:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror or exc}") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            path, "not UTF-8 text", line=raw[: exc.start].count(b"\n") + 1
        ) from exc


def read_mptconf(path: str) -> Section:
    """One file (``-``: standard input) parsed."""
    if path == "-":
        return parse_mptconf(sys.stdin.read(), "<stdin>")
    return parse_mptconf(_read_text(path), path)


def config_dir_of(main: Section) -> str:
    """The drop-in directory the main file names (the last ``config_dir`` in ``defaults``)."""
    found = DEFAULT_CONFIG_DIR
    for sec in main.subsections("defaults"):
        for s in sec.settings:
            if s.keyword == "config_dir":
                found = s.value
    return found


def read_with_config_dir(path: str, config_dir: str | None = None) -> list[Section]:
    """The main file and its drop-ins, in the order multipathd reads them.

    ``config_dir`` overrides the directory the file names; a directory that does not exist
    holds no drop-ins (as for multipathd).
    """
    main = read_mptconf(path)
    directory = config_dir_of(main) if config_dir is None else config_dir
    if not directory:
        return [main]
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".conf"))
    except FileNotFoundError:
        return [main]
    except OSError as exc:
        raise ConfigError(directory, f"cannot read: {exc.strerror or exc}") from exc
    files = [os.path.join(directory, n) for n in names]
    return [main, *(read_mptconf(f) for f in files if os.path.isfile(f))]
