"""``python -m dmpath.lab``: provision the host, run a command in the lab, the tour, the
bench (dmpathd against multipathd), or the fault parts (soak, ...) with their figures."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from dmpath.errors import DmpathError


def tour_display_args() -> list[str]:
    """The host terminal's width and colour, told to the tour: in the guest, stdout is a
    pipe back to us, so the tour cannot see the terminal it is really shown on."""
    tty = sys.stdout.isatty()
    width = shutil.get_terminal_size((100, 24)).columns if tty else 100
    color = bool(os.environ.get("FORCE_COLOR")) or (tty and not os.environ.get("NO_COLOR"))
    return ["--width", str(max(60, min(width, 160))), "--color" if color else "--no-color"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dmpath.lab", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("provision", help="install missing Debian packages for the lab")
    r = sub.add_parser("run", help="boot the lab and run a command inside it")
    r.add_argument("--topology", default="default", help="LUNSxPATHS, e.g. 2x4 (default)")
    r.add_argument(
        "--memory", default=None, help="guest memory, e.g. 4G (default 2G: enough for 64x4)"
    )
    r.add_argument(
        "--kernel",
        default=None,
        help="kernel series to boot, e.g. 6.12 (default: the newest < 6.8, with md multipath)",
    )
    r.add_argument("command", nargs=argparse.REMAINDER)
    t = sub.add_parser("tour", help="boot the lab and show a live failover")
    t.add_argument("--topology", default="default")
    from dmpath.lab import bench

    b = sub.add_parser("bench", help="boot the lab and measure dmpathd against multipathd")
    bench.add_arguments(b)
    from dmpath.lab import faults

    f = sub.add_parser("faults", help="boot the lab, run the fault parts, record their figures")
    faults.add_arguments(f)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "provision":
            from dmpath.lab.provision import MODERN_KERNEL, ensure_lab, find_kernel

            image = ensure_lab(lambda m: print("lab:", m, file=sys.stderr))
            modern = find_kernel(series=MODERN_KERNEL)
            print(f"lab: ready (kernels {image} and {modern})", file=sys.stderr)
            return 0
        if args.cmd == "bench":
            return bench.host_main(args, tour_display_args())
        if args.cmd == "faults":
            return faults.host_main(args)
        from dmpath.lab.vm import GUEST_MEMORY, run_in_lab

        memory = GUEST_MEMORY
        kernel: str | None = None
        if args.cmd == "run":
            kernel = args.kernel
            cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
            topology = args.topology
            memory = args.memory or GUEST_MEMORY
        else:
            cmd = [sys.executable, "-m", "dmpath.lab.tour", *tour_display_args()]
            topology = args.topology
        res = run_in_lab(
            cmd or ["true"],
            topology=topology,
            echo=print,
            progress=lambda m: print("lab:", m, file=sys.stderr, flush=True),
            memory=memory,
            kernel=kernel,
        )
        return res.returncode
    except DmpathError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
