"""fio's JSON report, as fio 3.33 (Debian 12) prints it: golden files captured with the
commands in tests/fixtures/fio/README."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmpath.lab import fio

FIXTURES = Path(__file__).parent.parent / "fixtures" / "fio"


def test_a_verified_run_reports_each_job_with_its_io_and_longest_completion() -> None:
    jobs = fio.parse_fio_json((FIXTURES / "verified.json").read_text())
    assert [j.name for j in jobs] == ["map0", "map0"]
    for j in jobs:
        assert j.error == 0
        assert j.written > 0 and j.read > 0  # written, and read back to verify
        assert 0 < j.max_write_latency < 1.0
        assert j.max_latency == max(j.max_write_latency, j.max_read_latency)
    # fio's total_ios of both directions: the writes and their verify reads
    assert [j.ios for j in jobs] == [49808 + 49813, 91136 + 91137]


def test_an_io_error_ends_the_job_with_its_errno_past_fio_s_warnings() -> None:
    text = (FIXTURES / "enospc.json").read_text()
    assert text.startswith("fio: io_u error")  # fio's complaint comes first
    [job] = fio.parse_fio_json(text)
    assert job.name == "full"
    assert job.error == 28  # ENOSPC
    assert job.written == 0
    assert job.ios == 1  # the one write that failed


@pytest.mark.parametrize("text", ["", "fio: cannot open", '{"jobs": [', "{}x"])
def test_no_report_is_a_one_line_error(text: str) -> None:
    with pytest.raises(fio.FioError) as ei:
        fio.parse_fio_json(text)
    assert "\n" not in str(ei.value)


def test_the_job_file_gives_each_job_its_own_region_of_each_device() -> None:
    text = fio.job_file(["/dev/mapper/a", "/dev/mapper/b"], 90)
    assert "verify=crc32c" in text and "direct=1" in text and "runtime=90" in text
    assert "offset_increment=8M" in text and "numjobs=2" in text and "size=8M" in text
    assert text.count("filename=") == 2
    assert "[map1]\nfilename=/dev/mapper/b" in text


def test_a_stride_starts_each_device_s_jobs_further_in() -> None:
    plain = fio.job_file(["/dev/a", "/dev/b"], 90)
    assert "offset=" not in plain.replace("offset_increment=", "")
    text = fio.job_file(["/dev/a", "/dev/b", "/dev/c"], 90, stride_mb=32)
    assert "[map0]\nfilename=/dev/a\noffset=0M" in text
    assert "[map1]\nfilename=/dev/b\noffset=32M" in text
    assert "[map2]\nfilename=/dev/c\noffset=64M" in text


def test_a_rate_limits_every_job_and_none_is_the_default() -> None:
    assert "rate_iops" not in fio.job_file(["/dev/a"], 90)
    assert "\nrate_iops=150\n" in fio.job_file(["/dev/a"], 90, rate_iops=150)
