"""Map names: user-friendly aliases (bindings file) and remembered WWIDs (wwids file).

Both files keep multipath-tools' formats (data lines byte for byte; the comment header is
ours, under their version line), so that a host moving from multipathd keeps its
/dev/mapper names (copy /etc/multipath/bindings) and its list of multipath WWIDs (which
LVM can also read). This module is pure: text in, records out, and
records to text; ``dmpath.policy.files`` does the reading and the atomic writing.

Bindings file: one ``alias wwid`` per line, ``#`` starts a comment. Friendly names are
the prefix plus a bijective base-26 number: 1 → a, 26 → z, 27 → aa, 28 → ab, ..., 702 →
zz, 703 → aaa (multipath-tools' ``format_devname``). A new WWID gets the lowest number
whose name is bound to nobody and not otherwise taken; a name, once bound, stays with its
WWID for as long as the line stays in the file, across restarts.

Damaged files never stop the daemon: bad lines are skipped and reported as warnings; of
two lines that bind one alias (or one WWID) the first wins, as multipath-tools' lookups do.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from dmpath.config import MapOptions, valid_wwid

#: first line of both files: multipath-tools reads only the data lines, but keeping its
#: version line makes the files recognisably the same format to people and tools
BINDINGS_HEADER = (
    "# Multipath bindings, Version : 1.0\n"
    "# NOTE: this file is maintained by dmpathd, in the format of multipath-tools'\n"
    "# bindings file. Edit it only while dmpathd is stopped.\n"
    "#\n"
    "# Format:\n"
    "# alias wwid\n"
    "#\n"
)
WWIDS_HEADER = (
    "# Multipath wwids, Version : 1.0\n"
    "# NOTE: this file is maintained by dmpathd, in the format of multipath-tools'\n"
    "# wwids file. Edit it only while dmpathd is stopped.\n"
    "#\n"
    "# Valid WWIDs:\n"
)

#: names longer than this many letters overflow multipath-tools' int ids; never needed
_MAX_LETTERS = 7


@dataclass(frozen=True)
class Binding:
    alias: str
    wwid: str


@dataclass(frozen=True)
class Bindings:
    """The bindings file's entries in file order (the order new ones are appended in)."""

    entries: tuple[Binding, ...] = ()

    def alias_of(self, wwid: str) -> str | None:
        for b in self.entries:
            if b.wwid == wwid:
                return b.alias
        return None

    def wwid_of(self, alias: str) -> str | None:
        for b in self.entries:
            if b.alias == alias:
                return b.wwid
        return None

    def aliases(self) -> frozenset[str]:
        return frozenset(b.alias for b in self.entries)

    def add(self, alias: str, wwid: str) -> Bindings:
        """A copy with ``alias wwid`` appended; refuses to bind a taken alias or WWID."""
        if not valid_alias(alias):
            raise ValueError(f"invalid alias {alias!r}")
        if not valid_wwid(wwid):
            raise ValueError(f"invalid WWID {wwid!r}")
        if self.wwid_of(alias) is not None or self.alias_of(wwid) is not None:
            raise ValueError(f"{alias} or {wwid} is already bound")
        return Bindings((*self.entries, Binding(alias, wwid)))

    def without(self, aliases: Collection[str]) -> Bindings:
        return Bindings(tuple(b for b in self.entries if b.alias not in aliases))


def valid_alias(alias: str) -> bool:
    """What the bindings file can hold as an alias: one word, no '/' (a /dev path)."""
    return (
        bool(alias)
        and "/" not in alias
        and "#" not in alias
        and not any(c.isspace() for c in alias)
    )


# --------------------------------------------------------------------------- sequence


def alias_for_id(n: int, prefix: str) -> str:
    """The n-th friendly name: 1 → mpatha, 26 → mpathz, 27 → mpathaa (bijective base 26)."""
    if n < 1:
        raise ValueError(f"friendly-name numbers start at 1, not {n}")
    letters = []
    while n > 0:
        n, r = divmod(n - 1, 26)
        letters.append(chr(ord("a") + r))
    return prefix + "".join(reversed(letters))


def id_of_alias(alias: str, prefix: str) -> int | None:
    """The number of a friendly name (``alias_for_id``'s inverse); None if it is not one."""
    if not alias.startswith(prefix):
        return None
    tail = alias[len(prefix) :]
    if not tail or len(tail) > _MAX_LETTERS or not all("a" <= c <= "z" for c in tail):
        return None
    n = 0
    for c in tail:
        n = n * 26 + (ord(c) - ord("a") + 1)
    return n


# --------------------------------------------------------------------------- bindings file


def parse_bindings(text: str) -> tuple[Bindings, list[str]]:
    """The entries of a bindings file, and a warning per line that was skipped or odd."""
    entries: list[Binding] = []
    warnings: list[str] = []
    by_alias: dict[str, Binding] = {}
    by_wwid: dict[str, Binding] = {}
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.split("#", 1)[0]
        words = line.split()
        if not words:
            continue
        if len(words) < 2:
            warnings.append(f"line {lineno}: alias {words[0]!r} has no WWID: skipped")
            continue
        alias, wwid = words[0], words[1]
        if len(words) > 2:
            warnings.append(f"line {lineno}: extra text after the WWID ignored: {words[2:]}")
        if not valid_alias(alias):
            warnings.append(f"line {lineno}: invalid alias {alias!r}: skipped")
            continue
        if not valid_wwid(wwid):
            warnings.append(f"line {lineno}: invalid WWID {wwid!r}: skipped")
            continue
        first = by_alias.get(alias)
        if first is not None:
            if first.wwid == wwid:
                warnings.append(f"line {lineno}: duplicate of an earlier line: skipped")
            else:
                warnings.append(
                    f"line {lineno}: alias {alias} already bound to {first.wwid}: "
                    f"binding to {wwid} skipped"
                )
            continue
        first = by_wwid.get(wwid)
        if first is not None:
            warnings.append(
                f"line {lineno}: WWID {wwid} already bound to {first.alias}: alias {alias} skipped"
            )
            continue
        b = Binding(alias, wwid)
        entries.append(b)
        by_alias[alias] = b
        by_wwid[wwid] = b
    return Bindings(tuple(entries)), warnings


def format_bindings(bindings: Bindings) -> str:
    """The file text: a fresh header, then one ``alias wwid`` line per entry.

    Comments of the old file are not kept (multipath-tools does not keep them either when
    it rewrites the file); the entries keep their order.
    """
    return BINDINGS_HEADER + "".join(f"{b.alias} {b.wwid}\n" for b in bindings.entries)


def assign_alias(
    bindings: Bindings, wwid: str, prefix: str, taken: Collection[str] = ()
) -> tuple[str, Bindings]:
    """The friendly name of ``wwid`` and the bindings to keep afterwards.

    An existing binding is returned unchanged (stable across restarts). Otherwise the
    lowest-numbered name that is bound to no WWID and not in ``taken`` is bound and
    appended. ``taken``: names that are not this WWID's to use (aliases the configuration
    gives other WWIDs, names of other maps); a binding of this WWID whose name has since
    become taken is given up for a fresh one, so two maps never share a name.
    Raises ValueError for a WWID the file cannot hold.
    """
    if not valid_wwid(wwid):
        raise ValueError(f"invalid WWID {wwid!r}")
    existing = bindings.alias_of(wwid)
    if existing is not None:
        if existing not in taken:
            return existing, bindings
        bindings = bindings.without({existing})
    used = bindings.aliases() | frozenset(taken)
    n = 1
    while alias_for_id(n, prefix) in used:
        n += 1
    alias = alias_for_id(n, prefix)
    return alias, bindings.add(alias, wwid)


def assign_aliases(
    bindings: Bindings, wwids: Sequence[str], prefix: str, taken: Collection[str] = ()
) -> tuple[dict[str, str], Bindings]:
    """``assign_alias`` for many WWIDs at once (a coldplug of hundreds of LUNs).

    Same names as calling ``assign_alias`` for each WWID in order, but the search for
    the next free number resumes where the last one stopped and the lookups are dicts, so
    binding N new LUNs costs O(N + bindings), not O(N x bindings) (16,384 paths of 1,024
    LUNs would otherwise spend seconds here). Invalid WWIDs raise ValueError as there.
    """
    by_wwid = {b.wwid: b.alias for b in bindings.entries}
    used = set(bindings.aliases()) | set(taken)
    out: dict[str, str] = {}
    entries = list(bindings.entries)
    dropped: set[str] = set()
    n = 1
    for wwid in wwids:
        if wwid in out:
            continue
        if not valid_wwid(wwid):
            raise ValueError(f"invalid WWID {wwid!r}")
        existing = by_wwid.get(wwid)
        if existing is not None and existing not in taken:
            out[wwid] = existing
            continue
        if existing is not None:
            dropped.add(existing)  # its name is now another's: give it up, as assign_alias
        while alias_for_id(n, prefix) in used:
            n += 1
        alias = alias_for_id(n, prefix)
        used.add(alias)
        entries.append(Binding(alias, wwid))
        by_wwid[wwid] = alias
        out[wwid] = alias
    if not dropped and len(entries) == len(bindings.entries):
        return out, bindings
    kept = tuple(b for b in entries if b.alias not in dropped or by_wwid.get(b.wwid) == b.alias)
    return out, Bindings(kept)


def drop_conflicts(bindings: Bindings, configured: Mapping[str, str]) -> tuple[Bindings, list[str]]:
    """Remove bindings whose alias the configuration gives to another WWID.

    ``configured`` is alias → WWID from [[multipaths]] (``config.configured_aliases``):
    the configuration wins, as in multipath-tools, and the WWID that lost its binding gets
    a new friendly name when it next needs one.
    """
    bad = {
        b.alias for b in bindings.entries if b.alias in configured and configured[b.alias] != b.wwid
    }
    warnings = [
        f"alias {b.alias} of {b.wwid} is configured for {configured[b.alias]}: binding dropped"
        for b in bindings.entries
        if b.alias in bad
    ]
    return bindings.without(bad), warnings


def map_name(
    wwid: str, options: MapOptions, bindings: Bindings, taken: Collection[str] = ()
) -> tuple[str, Bindings]:
    """The name of the map of ``wwid``: configured alias > friendly name > the WWID itself.

    Returns the bindings to keep (changed only when a friendly name was given out).
    ``taken`` as for ``assign_alias``.
    """
    if options.alias:
        return options.alias, bindings
    if not options.user_friendly_names:
        return wwid, bindings
    return assign_alias(bindings, wwid, options.alias_prefix, taken)


# --------------------------------------------------------------------------- wwids file


def parse_wwids(text: str) -> tuple[tuple[str, ...], list[str]]:
    """The WWIDs of a wwids file (``/wwid/`` lines, in order) and warnings for bad lines.

    As multipath-tools reads it: a data line starts with '/', the WWID runs to the next
    '/', anything after that is ignored; lines starting with '#' are comments.
    """
    wwids: list[str] = []
    seen: set[str] = set()
    warnings: list[str] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not stripped.startswith("/") or "/" not in stripped[1:]:
            warnings.append(f"line {lineno}: not a /wwid/ line: skipped")
            continue
        wwid = stripped[1:].split("/", 1)[0]
        if not valid_wwid(wwid):
            warnings.append(f"line {lineno}: invalid WWID {wwid!r}: skipped")
            continue
        if wwid in seen:
            warnings.append(f"line {lineno}: WWID {wwid} listed twice")
            continue
        seen.add(wwid)
        wwids.append(wwid)
    return tuple(wwids), warnings


def format_wwids(wwids: Iterable[str]) -> str:
    """The file text: a fresh header, then ``/wwid/`` per WWID (duplicates dropped)."""
    out = []
    for w in dict.fromkeys(wwids):
        if not valid_wwid(w):
            raise ValueError(f"invalid WWID {w!r}")
        out.append(f"/{w}/\n")
    return WWIDS_HEADER + "".join(out)


def add_wwid(wwids: tuple[str, ...], wwid: str) -> tuple[str, ...]:
    """``wwids`` with ``wwid`` appended if it is new (the same tuple if not)."""
    if not valid_wwid(wwid):
        raise ValueError(f"invalid WWID {wwid!r}")
    return wwids if wwid in wwids else (*wwids, wwid)


def add_wwids(wwids: tuple[str, ...], new: Iterable[str]) -> tuple[str, ...]:
    """``add_wwid`` for many at once, in one pass (the same tuple if none is new)."""
    seen = set(wwids)
    extra: list[str] = []
    for w in new:
        if not valid_wwid(w):
            raise ValueError(f"invalid WWID {w!r}")
        if w not in seen:
            seen.add(w)
            extra.append(w)
    return (*wwids, *extra) if extra else wwids


def remove_wwid(wwids: tuple[str, ...], wwid: str) -> tuple[str, ...]:
    return tuple(w for w in wwids if w != wwid)
