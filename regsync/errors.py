"""The error hierarchy, and the one place that maps errors to exit codes (README, "Exit codes"; docs/architecture.md)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_CHANGES = 4
EXIT_LOCKED = 5


def one_line(text: str) -> str:
    """`text` with every control character (newline, carriage return, terminal escape) shown escaped:
    a registry's error text or a manifest's field must not forge a log line or repaint a terminal."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


class RegsyncError(Exception):
    """Base of every error meant for the user: its message is one clear line (made so here, since
    messages quote what servers send)."""

    exit_code = EXIT_RUNTIME

    def __str__(self) -> str:
        return one_line(super().__str__())


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
        self.reason = one_line(reason)
        super().__init__(reason)


class LockedError(RegsyncError):
    exit_code = EXIT_LOCKED


class Interrupted(RegistryError):
    """SIGTERM or the deadline reached a transfer: it stops here and resumes on the next run."""

    def __init__(self) -> None:
        super().__init__("run", None, "interrupted before this transfer started")


class InvalidName(VerificationError, ValueError):
    """A name outside its grammar. A VerificationError, so content naming one is refused (exit 3);
    a ValueError, so a policy validator reports it at its line like any other bad value."""


def shown(value, limit: int = 80) -> str:
    """A name as it may be printed: control characters escaped, length bounded (it may be hostile)."""
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "…"
