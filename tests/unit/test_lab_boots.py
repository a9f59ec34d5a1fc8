"""The pytest bridge runs each boot flavour's lab tests in one boot of that flavour."""

from __future__ import annotations

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


def test_each_flavour_boots_once_with_its_own_tests(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootlog = pytester.path / "boots.log"
    monkeypatch.setenv("BOOTLOG", str(bootlog))
    monkeypatch.delenv("DMPATH_LAB", raising=False)
    monkeypatch.delenv("CI", raising=False)
    pytester.makeconftest("pytest_plugins = ['dmpath.lab.pytest_plugin']\n" + FAKE_BOOTS)
    pytester.makepyfile(test_mixed=TESTS)
    # a subprocess: the fake boots must not replace the real ones in this session
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    # the guest's outcomes are the host's: c failed in its boot, e's boot does not exist
    result.assert_outcomes(passed=4, failed=1, errors=1)
    assert bootlog.read_text().splitlines() == [
        "6.1 test_a,test_c_fails",
        "other test_b,test_d",
    ]
    result.stdout.fnmatch_lines(["*lab boot 'nowhere' is not known*"])


def test_an_unknown_flavour_is_one_line_naming_the_known_ones() -> None:
    with pytest.raises(UnknownBoot, match=r"'x' is not known \(known: .*6\.1"):
        runner("x")
    assert "6.1" in BOOTS
