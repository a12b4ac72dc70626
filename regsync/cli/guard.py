"""One place turns errors into one clear line and the documented exit code (README, "Exit codes"), for every command."""

from __future__ import annotations

import functools
import sys

from loguru import logger

from regsync.errors import EXIT_OK, EXIT_RUNTIME, RegsyncError


def run_guarded(fn):
    """One place turns errors into one clear line and the documented exit code."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from regsync.console import fail

        try:
            code = fn(*args, **kwargs)
        except RegsyncError as exc:
            fail(f"error: {exc}")
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted")
            sys.exit(EXIT_RUNTIME)
        except Exception as exc:  # a bug of ours: still one line, the traceback only when asked (-vv)
            logger.opt(exception=exc).debug("internal error")
            fail(f"internal error: {type(exc).__name__}: {exc} (rerun with -vv for details)")
            sys.exit(EXIT_RUNTIME)
        sys.exit(code or EXIT_OK)
    return wrapper
