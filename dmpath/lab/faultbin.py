"""A stand-in for ``dmsetup`` or ``mdadm`` that honours a fault plan (dmpath.kernel.faults).

``python -m dmpath.lab.faultbin TOOL ARGS...``: counts the call against the plan that
``DMPATH_FAULT_PLAN`` names (the counts live in ``PLAN.counts``, shared by every process),
then fails, hangs or dies as the plan says, or runs the real tool from the system
directories. The runner runs it in place of the tool when ``DMPATH_BIN_<TOOL>`` names a
wrapper script (:func:`write_standins`).
"""

from __future__ import annotations

import os
import sys

from dmpath.kernel import faults

_SYSTEM_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


def real_tool(tool: str) -> str:
    """The system's own ``tool`` (never a ``DMPATH_BIN_`` override: that is us)."""
    for d in _SYSTEM_DIRS:
        cand = os.path.join(d, tool)
        if os.access(cand, os.X_OK):
            return cand
    raise SystemExit(f"{tool}: not installed")


def write_standins(directory: str, tools: tuple[str, ...] = ("dmsetup", "mdadm")) -> dict[str, str]:
    """One executable wrapper per tool in ``directory``; returns the environment that makes
    the runner use them (``DMPATH_BIN_DMSETUP``...)."""
    env: dict[str, str] = {}
    for tool in tools:
        path = os.path.join(directory, tool)
        with open(path, "w") as fh:
            fh.write(f'#!/bin/sh\nexec {sys.executable} -m dmpath.lab.faultbin {tool} "$@"\n')
        os.chmod(path, 0o755)
        env["DMPATH_BIN_" + tool.upper()] = path
    return env


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] not in ("dmsetup", "mdadm"):
        print("usage: python -m dmpath.lab.faultbin dmsetup|mdadm ARGS...", file=sys.stderr)
        return 2
    tool, args = argv[0], argv[1:]
    plan_path = os.environ.get(faults.ENV, "")
    if plan_path:
        try:
            plan = faults.load_plan(plan_path)
        except faults.FaultPlanError as exc:
            print(f"{tool}: {exc}", file=sys.stderr)
            return 2
        op, target = faults.tool_call(tool, args)
        fault = faults.CountFile(plan_path + ".counts").consult(plan, tool, op, target)
        if fault is not None:

            def fail(err: int) -> None:
                print(f"{tool}: {op} {target}: {os.strerror(err)} (injected)", file=sys.stderr)
                raise SystemExit(1)

            faults.act(fault, fail)
    real = real_tool(tool)
    os.execv(real, [real, *args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
