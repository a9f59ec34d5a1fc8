"""One root exception for the project; each subclass carries its facts.

The CLI and the daemon turn a DmpathError into one actionable line (``str(err)``);
anything else escaping is a bug and is shown with a traceback.
"""

from __future__ import annotations


class DmpathError(Exception):
    """Root of every error dmpath raises on purpose."""

    #: exit status the CLI uses for this kind of error
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ParseError(DmpathError):
    """Kernel or tool output that does not have the shape we expect."""

    exit_code = 3

    def __init__(self, what: str, detail: str, text: str = "") -> None:
        shown = text if len(text) <= 120 else text[:117] + "..."
        super().__init__(f"cannot parse {what}: {detail}" + (f" in {shown!r}" if shown else ""))
        self.what = what
        self.detail = detail
        self.text = text


class CommandError(DmpathError):
    """An external command failed or could not be started."""

    exit_code = 4

    def __init__(
        self, argv: tuple[str, ...], returncode: int | None, stderr: str, reason: str = ""
    ) -> None:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        # dmsetup prints "Command failed." last; the useful line is the one before.
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip() != "Command failed."]
        if lines:
            last = lines[-1]
        why = reason or (f"exit status {returncode}" if returncode is not None else "failed")
        super().__init__(f"{' '.join(argv)}: {why}" + (f": {last}" if last else ""))
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr


class CommandTimeout(CommandError):
    """An external command did not finish in time (it was killed)."""

    def __init__(self, argv: tuple[str, ...], timeout: float) -> None:
        super().__init__(argv, None, "", reason=f"timed out after {timeout:g} s")
        self.timeout = timeout


class DeviceError(DmpathError):
    """A device could not be used: missing, offline, not a block device."""

    exit_code = 5

    def __init__(self, device: str, detail: str) -> None:
        super().__init__(f"{device}: {detail}")
        self.device = device
        self.detail = detail


class MissingKernelFeature(DmpathError):
    """The running kernel lacks something dmpath needs (module, personality)."""

    exit_code = 6

    def __init__(self, feature: str, detail: str) -> None:
        super().__init__(f"kernel has no {feature}: {detail}")
        self.feature = feature


class SgioError(DmpathError):
    """An SG_IO request could not be issued at all (not a SCSI outcome)."""

    exit_code = 5

    def __init__(self, device: str, detail: str, errno: int | None = None) -> None:
        super().__init__(f"{device}: SG_IO failed: {detail}")
        self.device = device
        self.errno = errno


class ConfigError(DmpathError):
    """A configuration file is invalid; names the key and line."""

    exit_code = 2

    def __init__(self, source: str, detail: str, key: str = "", line: int | None = None) -> None:
        where = source + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: " + (f"{key}: " if key else "") + detail)
        self.source = source
        self.key = key
        self.line = line
        self.detail = detail


class PolicyRefusal(DmpathError):
    """An action refused because it would hurt (e.g. failing the last path)."""

    exit_code = 7
