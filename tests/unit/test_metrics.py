"""dmpathd's metrics: what the recorder takes from reconciler steps, what a scrape of the
real engine (on the simulated SAN) says, the endpoint, the textfile and their options."""

from __future__ import annotations

import asyncio
import pathlib
import socket
import subprocess
import sys
import threading
import urllib.request

import pytest

from dmpath import config as cfgmod
from dmpath.daemon.engine import Daemon
from dmpath.daemon.exposition import Exporter, exposition, registry_for, split_listen
from dmpath.daemon.metrics import Histogram, Readout, Recorder
from dmpath.errors import ConfigError
from dmpath.lab.promtext import Samples, parse, value
from dmpath.model import Backend, Check, KernelState, Map, Path
from dmpath.policy import reconcile
from dmpath.sim.kernel import SimDmOps, SimSan
from dmpath.sim.run import running, wait_until

FAST = "polling_interval = 0.1\nmax_polling_interval = 0.4\ncoalesce_ms = 10\n"


# ---------------------------------------------------------------------- the recorder


class Paths:
    """The daemon's path models by name, for a recorder without a daemon."""

    def __init__(self, *paths: Path) -> None:
        self.by_name = {p.name: p for p in paths}

    def __call__(self, name: str) -> Path | None:
        return self.by_name.get(name)


def histogram(rec: Recorder, name: str) -> tuple[float, float]:
    """(count, sum) of one of the recorder's histograms."""
    (row,) = [h for h in rec.readout([], []).histograms if h.name == name]
    return row.count, row.sum


def one_path(state: KernelState, queueing: bool = False) -> tuple[Path, Map, Recorder]:
    """Path sda in map mpatha, the kernel holding it in ``state``, and a recorder."""
    sda = Path("sda", "8:0", "w", kernel_state=state)
    return sda, Map("mpatha", "w", Backend.DM, queueing=queueing, paths=[sda]), Recorder(Paths(sda))


def verdict(path: str, check: Check, issued_at: float, latency: float = 0.0) -> reconcile.Verdict:
    return reconcile.Verdict(path, check, "", "", issued_at, latency)


def note(kind: str, path: str) -> reconcile.Note:
    return reconcile.Note(kind, path, "")


def test_detection_runs_from_the_check_that_found_the_path_dead_to_its_failure() -> None:
    _sda, m, rec = one_path(KernelState.ACTIVE)
    rec.fed(m, verdict("sda", Check.DOWN, 10.0), [], 15.5)
    # a later check finding it dead again does not move the start
    rec.fed(m, verdict("sda", Check.DOWN, 16.0), [], 16.1)
    rec.fed(m, reconcile.Sent((None,)), [note("path_failed", "sda")], 16.5)
    assert histogram(rec, "dmpath_detection_seconds") == (1, 6.5)
    # failed once: nothing left to time
    rec.fed(m, reconcile.Sent((None,)), [note("path_failed", "sda")], 20.0)
    assert histogram(rec, "dmpath_detection_seconds") == (1, 6.5)


def test_a_path_the_kernel_failed_first_is_not_timed() -> None:
    _sda, m, rec = one_path(KernelState.ACTIVE)
    rec.fed(m, verdict("sda", Check.DOWN, 10.0), [], 10.1)
    rec.fed(m, reconcile.PathUevent("8:0", True), [note("kernel_path_failed", "sda")], 10.2)
    rec.fed(m, reconcile.Sent((None,)), [note("path_failed", "sda")], 11.0)
    assert histogram(rec, "dmpath_detection_seconds") == (0, 0.0)


def test_recovery_runs_from_the_first_usable_check_of_a_failed_path() -> None:
    _sda, m, rec = one_path(KernelState.FAILED)
    # an answer for the past (issued before the kernel failed the path) is not the start
    rec.fed(m, verdict("sda", Check.UP, 1.0), [reconcile.Recheck("sda")], 2.0)
    rec.fed(m, verdict("sda", Check.UP, 3.0, latency=0.004), [], 3.1)
    rec.fed(m, verdict("sda", Check.GHOST, 4.0), [], 4.1)
    rec.fed(m, reconcile.Sent((None,)), [note("path_reinstated", "sda")], 5.0)
    assert histogram(rec, "dmpath_recovery_seconds") == (1, 2.0)
    assert histogram(rec, "dmpath_check_duration_seconds") == (1, 0.004)


def test_a_path_dead_again_before_its_reinstatement_starts_recovery_over() -> None:
    _sda, m, rec = one_path(KernelState.FAILED)
    rec.fed(m, verdict("sda", Check.UP, 1.0), [], 1.1)
    rec.fed(m, verdict("sda", Check.DOWN, 2.0), [], 2.1)
    rec.fed(m, verdict("sda", Check.UP, 7.0), [], 7.1)
    rec.fed(m, reconcile.Sent((None,)), [note("path_reinstated", "sda")], 8.0)
    assert histogram(rec, "dmpath_recovery_seconds") == (1, 1.0)


def test_queueing_time_counts_spells_with_no_active_path_while_queue_if_no_path() -> None:
    sda, m, rec = one_path(KernelState.ACTIVE, queueing=True)
    clock = [0.0]
    rec.clock = lambda: clock[0]
    step = reconcile.Timer()
    rec.fed(m, step, [], 1.0)
    sda.kernel_state = KernelState.FAILED
    rec.fed(m, step, [], 2.0)
    sda.kernel_state = KernelState.ACTIVE
    rec.fed(m, step, [], 5.0)
    sda.kernel_state = KernelState.FAILED
    rec.fed(m, step, [], 10.0)
    clock[0] = 11.5
    (row,) = rec.readout([m], []).maps
    assert (row.queueing, row.queued_seconds) == (True, 4.5)
    # queueing turned off (no_path_retry ran out): the I/O fails, nothing is held
    m.queueing = False
    rec.fed(m, step, [], 12.0)
    clock[0] = 20.0
    (row,) = rec.readout([m], []).maps
    assert (row.queueing, row.queued_seconds) == (False, 5.0)


def test_a_value_on_a_bucket_bound_counts_in_that_bucket() -> None:
    h = Histogram("x_seconds", "", (0.1, 1.0))
    for v in (0.1, 0.5, 1.0, 3.0):
        h.observe(v)
    row = h.row()
    assert (row.cumulative, row.count, row.sum) == ((1, 3, 4), 4, 4.6)


def test_the_engine_loads_prometheus_client_only_for_an_exporter() -> None:
    # dmpathd --once runs from udev: its start-up should not pay for an unused library
    code = "import sys, dmpath.daemon.main, dmpath.daemon.engine; " \
        "print('prometheus_client' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=pathlib.Path(__file__).resolve().parents[2])
    assert res.stdout.strip() == "False"


def test_a_map_gone_while_queueing_and_made_again_does_not_count_the_gap() -> None:
    sda, m, rec = one_path(KernelState.FAILED, queueing=True)
    clock = [0.0]
    rec.clock = lambda: clock[0]
    rec.fed(m, reconcile.Timer(), [], 1.0)
    clock[0] = 5.0
    rec.readout([], [])  # flushed: a scrape no longer sees it
    sda.kernel_state = KernelState.ACTIVE
    rec.fed(m, reconcile.Timer(), [], 10.0)
    (row,) = rec.readout([m], []).maps
    assert (row.queueing, row.queued_seconds) == (False, 0.0)


# ---------------------------------------------------------------------- the real engine


def daemon_readout(d: Daemon) -> Readout:
    return d.metrics.readout(
        [mr.model for mr in d.maps.values()], [pr.model for pr in d.paths.values()]
    )


def kernel_says(d: Daemon, ops: SimDmOps, samples: Samples) -> list[str]:
    """Where the scrape differs from the simulated kernel's tables; empty if nowhere."""
    out = []
    for mr in d.maps.values():
        name = mr.model.name
        members = {p.devnum: p.name for p in mr.model.paths}
        failed = {dev for dev in members if ops.failed({dev})}
        if value(samples, "dmpath_map_paths", map=name) != len(members):
            out.append(f"{name}: paths")
        if value(samples, "dmpath_map_active_paths", map=name) != len(members) - len(failed):
            out.append(f"{name}: active paths")
        for dev, path in members.items():
            state = "failed" if dev in failed else "active"
            if value(samples, "dmpath_path_state", map=name, path=path, state=state) != 1:
                out.append(f"{name}: {path} not {state}")
    return out


def test_a_scrape_of_the_engine_follows_failures_and_reinstatements(
    tmp_path: pathlib.Path,
) -> None:
    async def main() -> None:
        san = SimSan(4, 2)
        async with running(san, str(tmp_path), FAST) as (d, ops):
            registry = registry_for(lambda: daemon_readout(d), process=False)
            first = parse(exposition(registry))
            assert kernel_says(d, ops, first) == []
            assert len([k for k in first if k[0] == "dmpath_map_info"]) == 4
            victim = san.paths[0]
            map_name = d.paths[victim.name].map_name
            san.set_path(victim.name, False)
            model = d.paths[victim.name].model
            # the scrape says what the daemon knows: the kernel's word once it is read
            await wait_until(lambda: ops.failed({victim.devnum}) == 1, "path failed")
            await wait_until(lambda: model.kernel_state == KernelState.FAILED, "read failed")
            down = parse(exposition(registry))
            assert kernel_says(d, ops, down) == []
            assert value(down, "dmpath_path_failures_total", map=map_name, path=victim.name) == 1
            assert value(down, "dmpath_map_active_paths", map=map_name) == 1
            assert value(down, "dmpath_map_failed_paths", map=map_name) == 1
            assert value(down, "dmpath_detection_seconds_count") == 1
            san.set_path(victim.name, True)
            await wait_until(lambda: ops.failed({victim.devnum}) == 0, "path back")
            await wait_until(
                lambda: (model.reinstate_count, model.kernel_state) == (1, KernelState.ACTIVE),
                "read reinstated",
            )
            back = parse(exposition(registry))
            assert kernel_says(d, ops, back) == []
            assert value(back, "dmpath_recovery_seconds_count") == 1
            assert value(back, "dmpath_recovery_seconds_bucket", le="+Inf") == 1
            labels = {"map": map_name, "path": victim.name}
            assert value(back, "dmpath_path_reinstatements_total", **labels) == 1
            # the administrator's word counts too
            await d.op_fail_path(victim.name)
            await d.op_reinstate_path(victim.name)
            admin = parse(exposition(registry))
            assert value(admin, "dmpath_path_failures_total", **labels) == 2
            assert value(admin, "dmpath_path_reinstatements_total", **labels) == 2
            assert value(admin, "dmpath_detection_seconds_count") == 1  # not a detection

    asyncio.run(main())


def test_a_scrape_from_another_thread_reads_the_state_on_the_event_loop(
    tmp_path: pathlib.Path,
) -> None:
    async def main() -> None:
        async with running(SimSan(2, 2), str(tmp_path), FAST) as (d, _ops):
            readers: list[int] = []

            def read() -> Readout:
                readers.append(threading.get_ident())
                return daemon_readout(d)

            registry = registry_for(read, asyncio.get_running_loop())
            text = await asyncio.to_thread(exposition, registry)
            assert readers == [threading.get_ident()]
            assert value(parse(text), "dmpath_map_paths", map="mpatha") == 2
            assert value(parse(text), "dmpath_process_open_fds") > 0

    asyncio.run(main())


# ---------------------------------------------------------------------- endpoint and file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_map_readout() -> Readout:
    sda = Path("sda", "8:0", "w", kernel_state=KernelState.ACTIVE, check=Check.UP)
    rec = Recorder(Paths(sda))
    return rec.readout([Map("mpatha", "w", Backend.DM, paths=[sda])], [])


def test_the_endpoint_serves_and_the_textfile_is_written_and_removed(
    tmp_path: pathlib.Path,
) -> None:
    port = free_port()
    textfile = tmp_path / "dmpath.prom"
    defaults = cfgmod.Defaults(
        metrics_listen=f"127.0.0.1:{port}",
        metrics_textfile=str(textfile),
        metrics_textfile_interval=1.0,
    )
    errors: list[str] = []

    async def main() -> None:
        registry = registry_for(one_map_readout, asyncio.get_running_loop())
        exporter = Exporter(defaults, registry, errors.append)
        await exporter.start()
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
            assert value(parse(body.decode()), "dmpath_map_active_paths", map="mpatha") == 1
            await wait_until(textfile.exists, "the textfile")
            assert value(parse(textfile.read_text()), "dmpath_map_paths", map="mpatha") == 1
        finally:
            await exporter.stop()
        assert not textfile.exists()
        assert [p.name for p in tmp_path.iterdir()] == []  # no temporary file left

    asyncio.run(main())
    assert errors == []


def test_a_taken_port_and_an_unwritable_file_are_reported_and_the_daemon_goes_on(
    tmp_path: pathlib.Path,
) -> None:
    errors: list[str] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        defaults = cfgmod.Defaults(
            metrics_listen=f"127.0.0.1:{port}",
            metrics_textfile=str(tmp_path / "missing" / "dmpath.prom"),
            metrics_textfile_interval=1.0,
        )

        async def main() -> None:
            registry = registry_for(one_map_readout, process=False)
            exporter = Exporter(defaults, registry, errors.append)
            await exporter.start()
            await wait_until(lambda: len(errors) == 2, "two errors")
            await asyncio.sleep(1.5)  # another interval: the same failure is not repeated
            await exporter.stop()

        asyncio.run(main())
    assert len(errors) == 2
    assert errors[0].startswith(f"metrics endpoint 127.0.0.1:{port} not started: ")
    assert errors[1].startswith(f"cannot write metrics to {tmp_path}/missing/dmpath.prom: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('metrics_listen = "localhost:9650"', "must be ADDRESS:PORT"),
        ('metrics_listen = "::1:9650"', "must be ADDRESS:PORT"),
        ('metrics_listen = "127.0.0.1"', "must be ADDRESS:PORT"),
        ('metrics_listen = "127.0.0.1:70000"', "must be ADDRESS:PORT"),
        ('metrics_textfile = "dmpath.prom"', "must be an absolute file path"),
        ('metrics_textfile = "/var/lib/dmpath.txt"', "must end in .prom"),
        ("metrics_textfile_interval = 0.5", "must be between 1 and 3600 seconds"),
    ],
)
def test_bad_metrics_options_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        cfgmod.parse_config(f"[defaults]\n{text}\n", "dmpath.toml")
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert "line 2" in str(err.value) or ":2:" in str(err.value)


def test_metrics_options_are_off_by_default_and_listen_addresses_split() -> None:
    d = cfgmod.Defaults()
    assert (d.metrics_listen, d.metrics_textfile) == ("", "")
    cfg = cfgmod.parse_config('[defaults]\nmetrics_listen = "[::1]:9650"\n')
    assert split_listen(cfg.defaults.metrics_listen) == ("::1", 9650)
    assert split_listen("0.0.0.0:9650") == ("0.0.0.0", 9650)
