"""SockdiagError and its few subclasses: a one-line message plus the exit status it maps to."""

from __future__ import annotations

from sockdiag.core.status import ExitStatus


class SockdiagError(Exception):
    """A failure to report as `sockdiag: MESSAGE` on stderr with exit status `status`."""

    status: ExitStatus = ExitStatus.FAILURE

    def __init__(self, message: str, status: ExitStatus | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class UsageError(SockdiagError):
    """Bad input on the command line (exit 2)."""

    status = ExitStatus.USAGE


class TimeoutFailure(SockdiagError):
    """An operation did not finish within its time limit (exit 3)."""

    status = ExitStatus.TIMEOUT


class PermissionFailure(SockdiagError):
    """The OS refused the operation for lack of privilege (exit 4)."""

    status = ExitStatus.PERMISSION


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C (every finally runs), exit 128 + signum."""

    def __init__(self, signum: int, name: str):
        super().__init__(name)
        self.signum, self.name = signum, name


def status_for_errno_name(name: str) -> ExitStatus:
    """The exit status for an OS error, by its symbolic errno name (see platform.errno_name)."""
    if name in ("EACCES", "EPERM"):
        return ExitStatus.PERMISSION
    if name == "ETIMEDOUT":
        return ExitStatus.TIMEOUT
    return ExitStatus.FAILURE
