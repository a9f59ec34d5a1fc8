"""Parsers of md's /proc/mdstat and mdadm outputs, on outputs captured in the lab.

Each captured output is copied here verbatim (``RAW``) next to what it must parse to, so a
reader sees input and result side by side; ``test_raw_copies_match_shared_fixtures``
checks the copies against ``shared/fixtures/md/`` when that directory is present.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmpath.errors import ParseError
from dmpath.kernel.mdstat import (
    DetailMember,
    ExportMember,
    MdadmAction,
    MdArray,
    MdLogEvent,
    MdMember,
    MdStat,
    MdSync,
    format_status_brackets,
    has_multipath_personality,
    parse_detail,
    parse_detail_export,
    parse_examine,
    parse_md_multipath_log,
    parse_mdadm_messages,
    parse_mdstat,
    parse_personalities,
    parse_status_brackets,
)

# --------------------------------------------------------------------------------------
# captured outputs (Debian 12, kernel 6.1.0-56-amd64, mdadm 4.2), verbatim
# --------------------------------------------------------------------------------------

RAW: dict[str, str] = {
    "mdstat_healthy.txt": (
        "Personalities : [multipath] \n"
        "md0 : active multipath sdc[0] sda[1]\n"
        "      31744 blocks super 1.2 [2/2] [UU]\n"
        "      \n"
        "unused devices: <none>\n"
    ),
    "mdstat_one_failed.txt": (
        "Personalities : [multipath] \n"
        "md0 : active multipath sdc[0] sda[1](F)\n"
        "      31744 blocks super 1.2 [2/1] [U_]\n"
        "      \n"
        "unused devices: <none>\n"
    ),
    # after `mdadm --fail` of sdc too: the last path stays working, nothing changes
    "mdstat_last_path.txt": (
        "Personalities : [multipath] \n"
        "md0 : active multipath sdc[0] sda[1](F)\n"
        "      31744 blocks super 1.2 [2/1] [U_]\n"
        "      \n"
        "unused devices: <none>\n"
    ),
    # after --remove and --add of sda: new descriptor number 2, back in slot 1
    "mdstat_readded.txt": (
        "Personalities : [multipath] \n"
        "md0 : active multipath sda[2] sdc[0]\n"
        "      31744 blocks super 1.2 [2/2] [UU]\n"
        "      \n"
        "unused devices: <none>\n"
    ),
    "mdadm_create.txt": (
        "mdadm: Defaulting to version 1.2 metadata\n"
        "mdadm: array /dev/md0 started.\n"
    ),
    "mdadm_fail.txt": "mdadm: set /dev/sda faulty in /dev/md0\n",
    # the kernel refused this one (last path), mdadm reports success all the same
    "mdadm_fail_last.txt": "mdadm: set /dev/sdc faulty in /dev/md0\n",
    "mdadm_remove.txt": "mdadm: hot removed /dev/sda from /dev/md0\n",
    "mdadm_add.txt": "mdadm: added /dev/sda\n",
    "mdadm_detail_export_healthy.txt": (
        "MD_LEVEL=multipath\n"
        "MD_DEVICES=2\n"
        "MD_METADATA=1.2\n"
        "MD_UUID=1aa3baf3:3a5c3b7d:791cd71d:bcab4a7c\n"
        "MD_NAME=virtme-ng:0\n"
        "MD_DEVICE_dev_sdc_ROLE=0\n"
        "MD_DEVICE_dev_sdc_DEV=/dev/sdc\n"
        "MD_DEVICE_dev_sda_ROLE=1\n"
        "MD_DEVICE_dev_sda_DEV=/dev/sda\n"
    ),
    "mdadm_detail_healthy.txt": (
        "/dev/md0:\n"
        "           Version : 1.2\n"
        "     Creation Time : Tue Nov 24 20:08:29 2026\n"
        "        Raid Level : multipath\n"
        "        Array Size : 31744 (31.00 MiB 32.51 MB)\n"
        "      Raid Devices : 2\n"
        "     Total Devices : 2\n"
        "       Persistence : Superblock is persistent\n"
        "\n"
        "       Update Time : Tue Nov 24 20:08:29 2026\n"
        "             State : clean \n"
        "    Active Devices : 2\n"
        "   Working Devices : 2\n"
        "    Failed Devices : 0\n"
        "     Spare Devices : 0\n"
        "\n"
        "Consistency Policy : none\n"
        "\n"
        "              Name : virtme-ng:0  (local to host virtme-ng)\n"
        "              UUID : 1aa3baf3:3a5c3b7d:791cd71d:bcab4a7c\n"
        "            Events : 0\n"
        "\n"
        "    Number   Major   Minor   RaidDevice State\n"
        "       0       8       32        0      active sync   /dev/sdc\n"
        "       1       8        0        1      active sync   /dev/sda\n"
    ),
    "mdadm_detail_one_failed.txt": (
        "/dev/md0:\n"
        "           Version : 1.2\n"
        "     Creation Time : Tue Nov 24 20:08:29 2026\n"
        "        Raid Level : multipath\n"
        "        Array Size : 31744 (31.00 MiB 32.51 MB)\n"
        "      Raid Devices : 2\n"
        "     Total Devices : 2\n"
        "       Persistence : Superblock is persistent\n"
        "\n"
        "       Update Time : Tue Nov 24 20:08:31 2026\n"
        "             State : clean, degraded \n"
        "    Active Devices : 1\n"
        "   Working Devices : 1\n"
        "    Failed Devices : 1\n"
        "     Spare Devices : 0\n"
        "\n"
        "Consistency Policy : none\n"
        "\n"
        "              Name : virtme-ng:0  (local to host virtme-ng)\n"
        "              UUID : 1aa3baf3:3a5c3b7d:791cd71d:bcab4a7c\n"
        "            Events : 2\n"
        "\n"
        "    Number   Major   Minor   RaidDevice State\n"
        "       0       8       32        0      active sync   /dev/sdc\n"
        "       -       0        0        1      removed\n"
        "\n"
        "       1       8        0        -      faulty   /dev/sda\n"
    ),
    "mdadm_examine_member.txt": (
        "/dev/sda:\n"
        "          Magic : a92b4efc\n"
        "        Version : 1.2\n"
        "    Feature Map : 0x0\n"
        "     Array UUID : 1aa3baf3:3a5c3b7d:791cd71d:bcab4a7c\n"
        "           Name : virtme-ng:0  (local to host virtme-ng)\n"
        "  Creation Time : Tue Nov 24 20:08:29 2026\n"
        "     Raid Level : multipath\n"
        "   Raid Devices : 2\n"
        "\n"
        " Avail Dev Size : 63488 sectors (31.00 MiB 32.51 MB)\n"
        "    Data Offset : 2048 sectors\n"
        "   Super Offset : 8 sectors\n"
        "   Unused Space : before=1968 sectors, after=0 sectors\n"
        "          State : clean\n"
        "    Device UUID : 63adc178:58c908f4:4bf741ae:29f6ca3c\n"
        "\n"
        "    Update Time : Tue Nov 24 20:08:29 2026\n"
        "  Bad Block Log : 512 entries available at offset 16 sectors\n"
        "       Checksum : c5015a17 - correct\n"
        "         Events : 0\n"
        "\n"
        "\n"
        "   Device Role : Active device 1\n"
        "   Array State : AA ('A' == active, '.' == missing, 'R' == replacing)\n"
    ),
    "dmesg_md_multipath.txt": (
        "[   14.536507] device-mapper: multipath service-time: version 0.3.0 loaded\n"
        "[   14.814373] device-mapper: multipath queue-length: version 0.2.0 loaded\n"
        "[   15.056396] device-mapper: multipath round-robin: version 1.2.0 loaded\n"
        "[   27.601651] multipath: array md0 active with 2 out of 2 IO paths\n"
        "[   29.252745] multipath: IO failure on sda, disabling IO path.\n"
        "               multipath: Operation continuing on 1 IO paths.\n"
        "[   29.643677] multipath: only one IO path left and IO error.\n"
    ),
    "lun0_paths.txt": "lun0 paths: /dev/sda /dev/sdc \n",
}

UUID = "1aa3baf3:3a5c3b7d:791cd71d:bcab4a7c"
SHARED_MD = Path(
    os.environ.get("DMPATH_FIXTURES", Path(__file__).resolve().parents[1] / "fixtures")
) / "md"


@pytest.mark.parametrize("name", sorted(RAW))
def test_raw_copies_match_shared_fixtures(name: str) -> None:
    path = SHARED_MD / name
    if not SHARED_MD.is_dir():
        pytest.skip(f"shared fixtures not present at {SHARED_MD}")
    assert path.read_text() == RAW[name]


def test_every_shared_md_fixture_is_covered() -> None:
    if not SHARED_MD.is_dir():
        pytest.skip(f"shared fixtures not present at {SHARED_MD}")
    assert {p.name for p in SHARED_MD.iterdir()} <= set(RAW)


# --------------------------------------------------------------------------------------
# /proc/mdstat, captured
# --------------------------------------------------------------------------------------


def _md0(members: tuple[MdMember, ...], working: int, slots: tuple[bool, ...]) -> MdStat:
    return MdStat(
        personalities=("multipath",),
        arrays=(
            MdArray(
                name="md0",
                state="active",
                personality="multipath",
                members=members,
                blocks=31744,
                super_version="1.2",
                raid_disks=2,
                working_disks=working,
                slots=slots,
            ),
        ),
        unused=(),
    )


MDSTAT_EXPECTED: dict[str, MdStat] = {
    "mdstat_healthy.txt": _md0(
        (MdMember("sdc", 0), MdMember("sda", 1)), 2, (True, True)
    ),
    "mdstat_one_failed.txt": _md0(
        (MdMember("sdc", 0), MdMember("sda", 1, ("F",))), 1, (True, False)
    ),
    "mdstat_last_path.txt": _md0(
        (MdMember("sdc", 0), MdMember("sda", 1, ("F",))), 1, (True, False)
    ),
    "mdstat_readded.txt": _md0(
        (MdMember("sda", 2), MdMember("sdc", 0)), 2, (True, True)
    ),
}


@pytest.mark.parametrize("name", sorted(MDSTAT_EXPECTED))
def test_mdstat_fixture(name: str) -> None:
    assert parse_mdstat(RAW[name]) == MDSTAT_EXPECTED[name]


@pytest.mark.parametrize(
    ("name", "brackets"),
    [
        ("mdstat_healthy.txt", "[2/2] [UU]"),
        ("mdstat_one_failed.txt", "[2/1] [U_]"),
        ("mdstat_last_path.txt", "[2/1] [U_]"),
        ("mdstat_readded.txt", "[2/2] [UU]"),
    ],
)
def test_status_brackets_rerender_as_the_kernel_printed(name: str, brackets: str) -> None:
    arr = parse_mdstat(RAW[name]).arrays[0]
    assert arr.status_brackets == brackets
    assert brackets in RAW[name]


def test_mdstat_helpers_on_fixture() -> None:
    stat = parse_mdstat(RAW["mdstat_one_failed.txt"])
    assert stat.has_multipath
    arr = stat.array("/dev/md0")
    assert arr is not None and stat.array("md0") is arr and stat.array("md1") is None
    assert arr.active and arr.degraded
    sda = arr.member("/dev/sda")
    assert sda is not None and sda.faulty and not sda.spare
    assert sda.render() == "sda[1](F)"
    assert arr.member("sdz") is None


# --------------------------------------------------------------------------------------
# format_status_brackets: what n and m mean
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slots", "text"),
    [
        ((True, True), "[2/2] [UU]"),
        ((True, False), "[2/1] [U_]"),  # n = slots (raid disks), m = working ones
        ((False, True), "[2/1] [_U]"),
        ((False, False), "[2/0] [__]"),
        ((True, True, False, True), "[4/3] [UU_U]"),
        ((), "[0/0] []"),  # a dm map with no paths left
    ],
)
def test_format_status_brackets(slots: tuple[bool, ...], text: str) -> None:
    assert format_status_brackets(slots) == text
    assert format_status_brackets(list(slots)) == text
    assert parse_status_brackets(text) == (len(slots), sum(slots), slots)


@pytest.mark.parametrize("text", ["[2/2] [U]", "[2/3] [UUU]", "[1/1] [X]", "no brackets", "[2/2]"])
def test_parse_status_brackets_refuses_what_no_kernel_prints(text: str) -> None:
    with pytest.raises(ParseError):
        parse_status_brackets(text)


# --------------------------------------------------------------------------------------
# /proc/mdstat: other shapes (kernel format, written by hand: not captured)
# --------------------------------------------------------------------------------------

MIXED = (
    "Personalities : [raid1] [raid6] [raid5] [raid4] [raid0] [multipath] \n"
    "md1 : active raid1 loop1[1] loop0[0]\n"
    "      1046528 blocks super 1.2 [2/2] [UU]\n"
    "      [=>...................]  resync =  8.4% (88704/1046528) finish=0.7min speed=22176K/sec\n"
    "      \n"
    "md127 : inactive sdd[0](S)\n"
    "      1048576 blocks super 1.2\n"
    "       \n"
    "md2 : active (auto-read-only) raid5 sde[3](S) sdh[4](W) sdd[1] sdc[0]\n"
    "      2093056 blocks super 1.2 level 5, 512k chunk, algorithm 2 [3/2] [UU_]\n"
    "      bitmap: 0/1 pages [0KB], 65536KB chunk\n"
    "\n"
    "md3 : active raid0 sdf[1] sdg[0]\n"
    "      2093056 blocks 512k chunks\n"
    "      \n"
    "md4 : active raid1 sdi[2] sdj[0]\n"
    "      1046528 blocks super 1.2 [2/1] [U_]\n"
    "        resync=DELAYED\n"
    "      something a future kernel prints\n"
    "      \n"
    "md5 : active multipath dm-3[0] nvme0n1p1[1](F)\n"
    "      4096 blocks super 1.2 [2/1] [U_]\n"
    "      \n"
    "unused devices: sdk[0] sdl[1]\n"
)


def test_mdstat_mixed_arrays_parse_without_crashing() -> None:
    stat = parse_mdstat(MIXED)
    assert stat.personalities == ("raid1", "raid6", "raid5", "raid4", "raid0", "multipath")
    assert [a.name for a in stat.arrays] == ["md1", "md127", "md2", "md3", "md4", "md5"]
    assert stat.unused == ("sdk[0]", "sdl[1]")

    md1 = stat.arrays[0]
    assert md1.personality == "raid1" and md1.status_brackets == "[2/2] [UU]"
    assert md1.sync == MdSync(
        "resync", 8.4, None,
        "[=>...................]  resync =  8.4% (88704/1046528) finish=0.7min speed=22176K/sec",
    )

    md127 = stat.arrays[1]
    assert md127 == MdArray(
        name="md127", state="inactive", personality=None,
        members=(MdMember("sdd", 0, ("S",)),), blocks=1048576, super_version="1.2",
    )
    assert not md127.active and not md127.degraded and md127.status_brackets is None

    md2 = stat.arrays[2]
    assert md2.read_only == "auto-read-only" and md2.personality == "raid5"
    assert md2.members[0].spare and md2.members[1].write_mostly
    assert (md2.raid_disks, md2.working_disks, md2.slots) == (3, 2, (True, True, False))
    assert md2.bitmap == "bitmap: 0/1 pages [0KB], 65536KB chunk"

    md3 = stat.arrays[3]  # 0.90 metadata prints no "super"; raid0 no brackets
    assert md3.super_version is None and md3.raid_disks is None and md3.slots is None
    assert md3.blocks == 2093056 and md3.extra == ()

    md4 = stat.arrays[4]
    assert md4.sync == MdSync("resync", None, "DELAYED", "resync=DELAYED")
    assert md4.extra == ("something a future kernel prints",)

    md5 = stat.arrays[5]
    assert [m.name for m in md5.members] == ["dm-3", "nvme0n1p1"]
    assert md5.members[1].faulty


def test_mdstat_with_no_arrays() -> None:
    text = "Personalities : \nunused devices: <none>\n"
    assert parse_mdstat(text) == MdStat(personalities=(), arrays=(), unused=())
    assert not has_multipath_personality(text)


def test_mdstat_read_only_and_recovery() -> None:
    text = (
        "Personalities : [raid1] \n"
        "md0 : active (read-only) raid1 sdb[2] sda[0]\n"
        "      1046528 blocks super 1.2 [2/1] [U_]\n"
        "      [>....................]  recovery =  0.4% (4608/1046528) finish=3.7min "
        "speed=4608K/sec\n"
        "      \n"
        "unused devices: <none>\n"
    )
    arr = parse_mdstat(text).arrays[0]
    assert arr.read_only == "read-only"
    assert arr.sync is not None and (arr.sync.action, arr.sync.percent) == ("recovery", 0.4)


def test_mdstat_array_without_disks_puts_super_on_head_line() -> None:
    # md prints " super X.Y" right after "inactive" when the member list is empty
    text = (
        "Personalities : [multipath] \nmd9 : inactive super 1.2\n       \n"
        "unused devices: <none>\n"
    )
    arr = parse_mdstat(text).arrays[0]
    assert arr == MdArray("md9", "inactive", None, (), super_version="1.2")


@pytest.mark.parametrize(
    ("text", "multipath"),
    [
        ("Personalities : [multipath] \n", True),
        ("Personalities : [raid1] [multipath] [raid0] \n", True),
        ("Personalities : [raid1] [raid0] \n", False),
        ("Personalities : \n", False),
        ("", False),  # md not loaded: no /proc/mdstat content at all
        ("garbage\n", False),
        ("Personalities : [multipathx] \n", False),
    ],
)
def test_has_multipath_personality(text: str, multipath: bool) -> None:
    assert has_multipath_personality(text) is multipath


def test_parse_personalities_refuses_garbage() -> None:
    with pytest.raises(ParseError):
        parse_personalities("Personalities : multipath\n")
    with pytest.raises(ParseError):
        parse_personalities("md0 : active multipath sda[0]\n")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        "hello\n",
        "md0 : active multipath sda[0]\n",  # no Personalities line first
        "Personalities : [multipath] \nmd0 : active\n",  # no personality
        "Personalities : [multipath] \nmd0 : active sda[0]\n",  # no personality
        "Personalities : [multipath] \nmd0 : running multipath sda[0]\n",
        "Personalities : [multipath] \nmd0 : active multipath sda[x]\n",
        "Personalities : [multipath] \nmd0 : active multipath sda\n",
        "Personalities : [multipath] \nmd0 : active multipath sda[0](Q)\n",
        "Personalities : [multipath] \nmd0 : active multipath sda[0]\n      8 blocks [2/3] [UU]\n",
        "Personalities : [multipath] \nmd0 : active multipath sda[0]\n      8 blocks [3/2] [UU]\n",
        "Personalities : [multipath] \nmd0 : active multipath sda[0]\n      8 blocks [2/2]\n",
        "Personalities : [multipath] \nmd0 :active multipath sda[0]\n",
    ],
)
def test_malformed_mdstat_raises_parse_error(text: str) -> None:
    with pytest.raises(ParseError):
        parse_mdstat(text)


# --------------------------------------------------------------------------------------
# hypothesis: member states -> kernel-format text -> parse -> same states
# --------------------------------------------------------------------------------------

SlotState = str  # "working" | "faulty" | "empty"

_names = st.from_regex(r"(sd[a-z]{1,2}|dm-[0-9]{1,3}|nvme[0-9]n[0-9]{1,2}|loop[0-9]{1,2})",
                       fullmatch=True)


@dataclass(frozen=True)
class Layout:
    """A multipath array's member states, as hypothesis draws them."""

    array: str
    states: list[SlotState]  # per slot: "working" | "faulty" | "empty"
    spares: int
    names: list[str]  # device names, enough for every member
    seed: int  # order of descriptor numbers and of the member list
    write_mostly: set[int]  # slots whose member also carries (W)


def _render_mdstat(lay: Layout) -> str:
    """Write what md would print for a multipath array in those states (the oracle).

    Kept independent of the code under test: brackets are built here by hand.
    """
    states, names, rnd = lay.states, lay.names, random.Random(lay.seed)
    members: list[str] = []
    descs = list(range(len(states) + lay.spares))
    rnd.shuffle(descs)
    k = 0
    for i, s in enumerate(states):
        if s == "empty":
            continue
        flags = ("(W)" if i in lay.write_mostly else "") + ("(F)" if s == "faulty" else "")
        members.append(f"{names[k]}[{descs[k]}]{flags}")
        k += 1
    for _ in range(lay.spares):
        members.append(f"{names[k]}[{descs[k]}](S)")
        k += 1
    rnd.shuffle(members)
    n = len(states)
    m = states.count("working")
    marks = "".join("U" if s == "working" else "_" for s in states)
    head = f"{lay.array} : active multipath" + "".join(" " + t for t in members)
    return (
        "Personalities : [multipath] [raid1] \n"
        f"{head}\n"
        f"      31744 blocks super 1.2 [{n}/{m}] [{marks}]\n"
        "      \n"
        "unused devices: <none>\n"
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    lay=st.builds(
        Layout,
        array=st.integers(0, 255).map(lambda n: f"md{n}"),
        states=st.lists(st.sampled_from(["working", "faulty", "empty"]), min_size=1,
                        max_size=12),
        spares=st.integers(0, 3),
        names=st.lists(_names, min_size=15, max_size=15, unique=True),
        seed=st.integers(0, 2**32 - 1),
        write_mostly=st.sets(st.integers(0, 11)),
    )
)
def test_mdstat_roundtrip(lay: Layout) -> None:
    text = _render_mdstat(lay)
    states, spares = lay.states, lay.spares
    stat = parse_mdstat(text)
    assert len(stat.arrays) == 1
    arr = stat.arrays[0]
    slots = tuple(s == "working" for s in states)
    assert arr.name == lay.array and arr.personality == "multipath"
    assert arr.slots == slots
    assert arr.raid_disks == len(states) and arr.working_disks == sum(slots)
    assert arr.status_brackets == format_status_brackets(slots)
    assert format_status_brackets(slots) in text
    assert sum(1 for m in arr.members if m.faulty) == states.count("faulty")
    assert sum(1 for m in arr.members if m.spare) == spares
    assert len(arr.members) == len(states) - states.count("empty") + spares
    assert len({m.desc_nr for m in arr.members}) == len(arr.members)
    # every member token re-renders exactly as it appeared
    for mem in arr.members:
        assert " " + mem.render() in text


# --------------------------------------------------------------------------------------
# malformed input never escapes as anything but ParseError
# --------------------------------------------------------------------------------------

PARSERS = {
    "mdstat": parse_mdstat,
    "detail": parse_detail,
    "examine": parse_examine,
    "export": parse_detail_export,
}
FIXTURE_FOR = {
    "mdstat": "mdstat_one_failed.txt",
    "detail": "mdadm_detail_one_failed.txt",
    "examine": "mdadm_examine_member.txt",
    "export": "mdadm_detail_export_healthy.txt",
}


@settings(max_examples=200)
@given(kind=st.sampled_from(sorted(PARSERS)), text=st.text(max_size=400))
def test_random_text_only_parse_error(kind: str, text: str) -> None:
    with contextlib.suppress(ParseError):
        PARSERS[kind](text)
    # the never-raising ones
    parse_mdadm_messages(text)
    parse_md_multipath_log(text)
    has_multipath_personality(text)


@settings(max_examples=400)
@given(
    kind=st.sampled_from(sorted(PARSERS)),
    cuts=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 40), st.text(max_size=5)),
                  max_size=4),
)
def test_mutated_fixtures_only_parse_error(
    kind: str, cuts: list[tuple[int, int, str]]
) -> None:
    text = RAW[FIXTURE_FOR[kind]]
    for pos, length, insert in cuts:
        at = pos % (len(text) + 1)
        text = text[:at] + insert + text[at + length :]
    with contextlib.suppress(ParseError):
        PARSERS[kind](text)


# --------------------------------------------------------------------------------------
# mdadm --detail
# --------------------------------------------------------------------------------------


def test_detail_healthy() -> None:
    d = parse_detail(RAW["mdadm_detail_healthy.txt"])
    assert (d.device, d.level, d.version, d.uuid) == ("/dev/md0", "multipath", "1.2", UUID)
    assert (d.raid_devices, d.total_devices, d.active_devices) == (2, 2, 2)
    assert (d.working_devices, d.failed_devices, d.spare_devices) == (2, 0, 0)
    assert d.state == ("clean",)
    assert (d.name, d.homehost, d.events, d.array_size_kib) == (
        "virtme-ng:0", "virtme-ng", 0, 31744
    )
    assert d.members == (
        DetailMember(0, 8, 32, 0, ("active", "sync"), "/dev/sdc"),
        DetailMember(1, 8, 0, 1, ("active", "sync"), "/dev/sda"),
    )
    assert all(m.in_sync for m in d.members)
    assert d.fields["Consistency Policy"] == "none"


def test_detail_one_failed_has_removed_slot_and_faulty_member() -> None:
    d = parse_detail(RAW["mdadm_detail_one_failed.txt"])
    assert d.state == ("clean", "degraded")
    assert (d.active_devices, d.working_devices, d.failed_devices, d.events) == (1, 1, 1, 2)
    assert d.members == (
        DetailMember(0, 8, 32, 0, ("active", "sync"), "/dev/sdc"),
        DetailMember(None, 0, 0, 1, ("removed",), None),  # slot 1 is empty
        DetailMember(1, 8, 0, None, ("faulty",), "/dev/sda"),  # no slot: role "-"
    )
    assert d.members[1].removed and not d.members[1].faulty
    sda = d.member("/dev/sda")
    assert sda is not None and sda.faulty and not sda.in_sync
    assert d.member("/dev/sdz") is None


def test_detail_other_table_shapes() -> None:
    text = (
        "/dev/md127:\n"
        "           Version : 1.2\n"
        "        Raid Level : raid1\n"
        "             State : inactive\n"
        "\n"
        "    Number   Major   Minor   RaidDevice\n"
        "\n"
        "       -       8       48        -        /dev/sdd\n"
        "       2       8       64        -      spare   /dev/sde\n"
        "       3       8       80        1      spare rebuilding   /dev/sdf\n"
    )
    d = parse_detail(text)
    assert d.raid_devices is None and d.state == ("inactive",)
    assert d.members == (
        DetailMember(None, 8, 48, None, (), "/dev/sdd"),
        DetailMember(2, 8, 64, None, ("spare",), "/dev/sde"),
        DetailMember(3, 8, 80, 1, ("spare", "rebuilding"), "/dev/sdf"),
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "mdadm: /dev/sda does not appear to be an md device\n",
        "/dev/md0:\n",
        "/dev/md0:\n  Raid Devices : two\n",
        "/dev/md0:\n  Raid Level : multipath\n    Number   Major   Minor   RaidDevice\n  0 8\n",
        "/dev/md0:\n  Raid Level : multipath\n    Number   Major   Minor   RaidDevice\n  x 8 0 0\n",
        "/dev/md0:\n  Raid Level : multipath\n    Number   Major   Minor   RaidDevice\n  0 - 0 0\n",
    ],
)
def test_detail_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_detail(text)


# --------------------------------------------------------------------------------------
# mdadm --detail --export
# --------------------------------------------------------------------------------------


def test_detail_export_healthy() -> None:
    e = parse_detail_export(RAW["mdadm_detail_export_healthy.txt"])
    assert (e.level, e.raid_devices, e.metadata, e.uuid, e.name, e.devname) == (
        "multipath", 2, "1.2", UUID, "virtme-ng:0", None
    )
    assert e.members == (
        ExportMember("dev_sdc", "/dev/sdc", "0"),
        ExportMember("dev_sda", "/dev/sda", "1"),
    )
    sda = e.member("/dev/sda")
    assert sda is not None and sda.slot == 1 and not sda.faulty
    assert e.member("/dev/sdz") is None


def test_detail_export_roles_and_devname() -> None:
    text = (
        "MD_LEVEL=multipath\nMD_DEVICES=2\nMD_DEVNAME=dmpathtest\n"
        "MD_DEVICE_dev_dm_3_ROLE=faulty\nMD_DEVICE_dev_dm_3_DEV=/dev/dm-3\n"
        "MD_DEVICE_dev_sdb_ROLE=spare\nMD_DEVICE_dev_sdb_DEV=/dev/sdb\n"
    )
    e = parse_detail_export(text)
    assert e.devname == "dmpathtest"
    assert e.members[0] == ExportMember("dev_dm_3", "/dev/dm-3", "faulty")
    assert e.members[0].faulty and e.members[0].slot is None
    assert e.members[1].role == "spare" and e.members[1].slot is None


@pytest.mark.parametrize(
    "text",
    ["", "MD_DEVICES=2\n", "MD_LEVEL=multipath\nnot a variable\n", "MD_LEVEL=x\nMD_DEVICES=a\n"],
)
def test_detail_export_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_detail_export(text)


# --------------------------------------------------------------------------------------
# mdadm --examine
# --------------------------------------------------------------------------------------


def test_examine_member() -> None:
    x = parse_examine(RAW["mdadm_examine_member.txt"])
    assert (x.device, x.version, x.array_uuid, x.level) == ("/dev/sda", "1.2", UUID, "multipath")
    assert x.device_uuid == "63adc178:58c908f4:4bf741ae:29f6ca3c"
    assert (x.name, x.homehost, x.raid_devices, x.events, x.state) == (
        "virtme-ng:0", "virtme-ng", 2, 0, "clean"
    )
    assert (x.role, x.slot, x.array_state) == ("Active device 1", 1, "AA")
    assert x.fields["Data Offset"] == "2048 sectors"


def test_examine_spare_role_has_no_slot() -> None:
    text = (
        "/dev/sdb:\n     Array UUID : " + UUID + "\n     Raid Level : multipath\n"
        "   Device Role : spare\n   Array State : A. ('A' == active)\n"
    )
    x = parse_examine(text)
    assert (x.role, x.slot, x.array_state, x.device_uuid) == ("spare", None, "A.", None)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "mdadm: No md superblock detected on /dev/sda.\n",
        "/dev/sda:\n     Raid Level : multipath\n",
        "/dev/sda:\n     Array UUID : " + UUID + "\n",
        "/dev/sda:\n     Array UUID : x\n     Raid Level : multipath\n   Events : many\n",
    ],
)
def test_examine_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_examine(text)


# --------------------------------------------------------------------------------------
# mdadm's one-line results
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "actions", "metadata"),
    [
        ("mdadm_create.txt", (MdadmAction("started", None, "/dev/md0"),), "1.2"),
        ("mdadm_fail.txt", (MdadmAction("faulty", "/dev/sda", "/dev/md0"),), None),
        ("mdadm_fail_last.txt", (MdadmAction("faulty", "/dev/sdc", "/dev/md0"),), None),
        ("mdadm_remove.txt", (MdadmAction("removed", "/dev/sda", "/dev/md0"),), None),
        ("mdadm_add.txt", (MdadmAction("added", "/dev/sda", None),), None),
    ],
)
def test_mdadm_messages_fixtures(
    name: str, actions: tuple[MdadmAction, ...], metadata: str | None
) -> None:
    out = parse_mdadm_messages(RAW[name])
    assert out.actions == actions
    assert out.notes == ()
    assert out.metadata == metadata


def test_mdadm_messages_other_lines() -> None:
    out = parse_mdadm_messages(
        "mdadm: re-added /dev/sdb\n"
        "mdadm: /dev/md/dmpathtest has been started with 2 drives.\n"
        "mdadm: stopped /dev/md9\n"
        "mdadm: hot remove failed for /dev/sda: Device or resource busy\n"
    )
    assert out.actions == (
        MdadmAction("re-added", "/dev/sdb", None),
        MdadmAction("started", None, "/dev/md/dmpathtest", drives=2),
        MdadmAction("stopped", None, "/dev/md9"),
    )
    assert out.notes == ("hot remove failed for /dev/sda: Device or resource busy",)
    assert out.did("stopped") and not out.did("added")


# --------------------------------------------------------------------------------------
# kernel log of the personality
# --------------------------------------------------------------------------------------


def test_md_multipath_log_fixture() -> None:
    events = parse_md_multipath_log(RAW["dmesg_md_multipath.txt"])
    # dm-multipath's "device-mapper: multipath ..." lines are not the personality's
    assert [(e.kind, e.device, e.paths, e.total, e.timestamp) for e in events] == [
        ("array_active", "md0", 2, 2, 27.601651),
        ("path_failed", "sda", None, None, 29.252745),
        ("continuing", None, 1, None, None),  # continuation line: no timestamp
        ("last_path_error", None, None, None, 29.643677),
    ]
    assert events[1] == MdLogEvent(
        "path_failed", "sda", None, None, 29.252745,
        "[   29.252745] multipath: IO failure on sda, disabling IO path.",
    )


def test_lun0_paths_match_the_array_members() -> None:
    # the capture script's own record of which paths it used
    paths = RAW["lun0_paths.txt"].split(":", 1)[1].split()
    d = parse_detail(RAW["mdadm_detail_healthy.txt"])
    assert sorted(m.device for m in d.members if m.device) == sorted(paths)
    stat = parse_mdstat(RAW["mdstat_healthy.txt"])
    assert sorted("/dev/" + m.name for m in stat.arrays[0].members) == sorted(paths)
