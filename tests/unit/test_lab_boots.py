"""The pytest bridge runs each boot flavour's lab tests in one boot of that flavour, or
the default flavour's in shards of whole modules, boots side by side."""

from __future__ import annotations

import pathlib

import pytest

from dmpath.lab.boots import BOOTS, UnknownBoot, runner

pytest_plugins = ["pytester"]

# A conftest for the inner session: fake boots that "run" the ids they are handed (each
# passes) and record which ids went into which boot, so the test sees the grouping.
FAKE_BOOTS = '''
import json, os
from dmpath.lab import boots
from dmpath.lab.vm import LabRun

def fake(name):
    def run(argv, *, outdir, echo, progress):
        res = next(a.split("=", 1)[1] for a in argv if a.startswith("DMPATH_LAB_RESULTS="))
        ids = open(next(a[1:] for a in argv if a.startswith("@"))).read().split()
        with open(os.path.join(os.environ["BOOTLOG"]), "a") as fh:
            fh.write(name + " " + ",".join(i.split("::")[-1] for i in ids) + "\\n")
        with open(res, "a") as fh:
            for i in ids:
                outcome = "failed" if i.endswith("fails") else "passed"
                fh.write(json.dumps({"nodeid": i, "when": "call", "outcome": outcome,
                                     "longrepr": None, "duration": 0.1}) + "\\n")
        return LabRun(0, "", outdir, 0.1)
    return run

boots.BOOTS["6.1"] = fake("6.1")
boots.BOOTS["other"] = fake("other")
'''

TESTS = '''
import pytest

@pytest.mark.lab
def test_a(): pass

@pytest.mark.lab(boot="other")
def test_b(): pass

@pytest.mark.lab
def test_c_fails(): pass

@pytest.mark.lab(boot="other")
def test_d(): pass

@pytest.mark.lab(boot="nowhere")
def test_e(): pass

def test_host(): pass
'''


def run_host_session(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tests: str | dict[str, str],
    conftest: str,
    parallel: int = 1,
) -> tuple[pytest.RunResult, pathlib.Path]:
    """A host-side pytest session over ``tests`` (one module's text, or module name ->
    text) with fake boots, ``parallel`` at a time; (result, boot log)."""
    bootlog = pytester.path / "boots.log"
    monkeypatch.setenv("BOOTLOG", str(bootlog))
    monkeypatch.setenv("DMPATH_LAB_PARALLEL", str(parallel))
    monkeypatch.delenv("DMPATH_LAB", raising=False)
    monkeypatch.delenv("CI", raising=False)
    pytester.makeconftest("pytest_plugins = ['dmpath.lab.pytest_plugin']\n" + conftest)
    pytester.makepyfile(**({"test_session": tests} if isinstance(tests, str) else tests))
    # a subprocess: the fake boots must not replace the real ones in this session
    return pytester.runpytest_subprocess("-p", "no:cacheprovider"), bootlog


def test_each_flavour_boots_once_with_its_own_tests(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, bootlog = run_host_session(pytester, monkeypatch, TESTS, FAKE_BOOTS)
    # the guest's outcomes are the host's: c failed in its boot, e's boot does not exist
    result.assert_outcomes(passed=4, failed=1, errors=1)
    assert bootlog.read_text().splitlines() == [
        "6.1 test_a,test_c_fails",
        "other test_b,test_d",
    ]
    result.stdout.fnmatch_lines(["*lab boot 'nowhere' is not known*"])


def _default_module(n: int) -> str:
    return "import pytest\n" + "".join(
        f"\n@pytest.mark.lab\ndef test_{n}_{k}(): pass\n" for k in range(3)
    )


def test_the_default_flavour_runs_in_shards_of_whole_modules_side_by_side(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    modules = {f"test_m{n}": _default_module(n) for n in range(4)}
    result, bootlog = run_host_session(pytester, monkeypatch, modules, FAKE_BOOTS, parallel=2)
    result.assert_outcomes(passed=12)
    lines = bootlog.read_text().splitlines()
    assert len(lines) == 2 and all(line.startswith("6.1 ") for line in lines)
    shards = [line.split(" ", 1)[1].split(",") for line in lines]
    every = [f"test_{n}_{k}" for n in range(4) for k in range(3)]
    assert sorted(t for s in shards for t in s) == every
    for s in shards:  # whole modules, in their order
        mods = {t.split("_")[1] for t in s}
        assert len(s) == 3 * len(mods) == 6
        assert s == sorted(s)
    result.stdout.fnmatch_lines(["*2 boots, 2 at a time: 6.1 (1/2) (6 tests), 6.1 (2/2)*"])


def test_an_unknown_flavour_is_one_line_naming_the_known_ones() -> None:
    with pytest.raises(UnknownBoot, match=r"'x' is not known \(known: .*6\.1"):
        runner("x")
    assert "6.1" in BOOTS


KERNEL_TESTS = '''
import pytest

@pytest.fixture(scope="module")
def shared():
    return object()

@pytest.mark.lab(kernels=("6.1", "6.12"))
def test_both(shared): pass

@pytest.mark.lab(kernels=("6.1", "6.12"))
@pytest.mark.parametrize("n", [1, 2])
def test_both_param(n): pass

@pytest.mark.lab(boot="6.12")
def test_modern_only(): pass

@pytest.mark.lab
def test_default(): pass
'''


def test_kernels_make_one_item_per_kernel_each_in_its_own_boot(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    conftest = FAKE_BOOTS + 'boots.BOOTS["6.12"] = fake("6.12")\n'
    result, bootlog = run_host_session(pytester, monkeypatch, KERNEL_TESTS, conftest)
    result.assert_outcomes(passed=8)
    assert bootlog.read_text().splitlines() == [
        "6.1 test_both[6.1],test_both_param[6.1-1],test_both_param[6.1-2],test_default",
        "6.12 test_both[6.12],test_both_param[6.12-1],test_both_param[6.12-2],test_modern_only",
    ]


def test_in_the_guest_an_item_for_another_kernel_fails_not_skips(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    running = ".".join(os.uname().release.split(".")[:2])
    monkeypatch.setenv("DMPATH_LAB", "1")
    pytester.makeconftest("pytest_plugins = ['dmpath.lab.pytest_plugin']\n")
    pytester.makepyfile(
        test_guest=f'''
import pytest

@pytest.mark.lab(kernels=("{running}", "1.0"))
def test_k(): pass
''',
        test_float='''
import pytest

@pytest.mark.lab(kernels=(6.1,))
def test_float(): pass
''',
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_guest.py")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*is for kernel 1.0 but the guest runs*"])
    bad = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_float.py")
    assert bad.ret != 0
    assert "kernels=...) wants a tuple of strings" in str(bad.stdout) + str(bad.stderr)


@pytest.mark.parametrize(
    ("series", "release", "ok"),
    [
        ("6.1", "6.1.0-57-amd64", True),
        ("6.1", "6.12.117+deb12-amd64", False),
        ("6.12", "6.12.117+deb12-amd64", True),
        ("6.12", "6.1.0-57-amd64", False),
        ("6.12", "6.12", True),
    ],
)
def test_kernel_matches_by_series_not_by_prefix(series: str, release: str, ok: bool) -> None:
    from dmpath.lab.boots import kernel_matches

    assert kernel_matches(series, release) is ok


def test_choose_kernel_default_and_series() -> None:
    from dmpath.lab.provision import LabSetupError, choose_kernel

    images = [
        "/boot/vmlinuz-6.12.117+deb12-amd64",
        "/boot/vmlinuz-6.1.0-57-amd64",
        "/boot/vmlinuz-6.1.0-9-amd64",
    ]
    assert choose_kernel(images) == "/boot/vmlinuz-6.1.0-57-amd64"
    assert choose_kernel(images, "6.12") == "/boot/vmlinuz-6.12.117+deb12-amd64"
    assert choose_kernel(images, "6.1") == "/boot/vmlinuz-6.1.0-57-amd64"
    with pytest.raises(LabSetupError, match=r"install Debian 12's linux-image-6\.12-amd64"):
        choose_kernel(images[1:], "6.12")
    with pytest.raises(LabSetupError, match=r"below 6\.8"):
        choose_kernel(images[:1])
    with pytest.raises(LabSetupError, match=r"MAJOR\.MINOR"):
        choose_kernel(images, "6")


def test_the_modern_boot_is_registered() -> None:
    assert "6.12" in BOOTS
