"""The error hierarchy, and the one place that maps errors to exit codes (DESIGN.md contract)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_CHANGES = 4
EXIT_LOCKED = 5


class RegsyncError(Exception):
    """Base of every error meant for the user: its message is one clear line."""

    exit_code = EXIT_RUNTIME


class PolicyError(RegsyncError):
    exit_code = EXIT_USAGE

    def __init__(self, msg: str, file: str | None = None, line: int | None = None):
        self.file, self.line, self.msg = file, line, msg
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(f"{where}{msg}")


class UsageError(RegsyncError):
    exit_code = EXIT_USAGE


class RegistryError(RegsyncError):
    """A registry answered something we cannot go on from (auth, not found, server error)."""

    method: str | None = None  # the HTTP method that failed, when a response said so
    code: str = ""  # the distribution-spec error code the registry gave (NAME_UNKNOWN, …), if any

    def __init__(self, ref: str, status: int | None, msg: str):
        self.ref, self.status = ref, status
        code = f" (HTTP {status})" if status else ""
        super().__init__(f"{ref}: {msg}{code}")


class NotFound(RegistryError):
    pass


class VerificationError(RegsyncError):
    """Content failed a check: the artifact is refused, never pushed."""

    exit_code = EXIT_REFUSED

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class LockedError(RegsyncError):
    exit_code = EXIT_LOCKED
