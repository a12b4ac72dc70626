"""One place turns errors into one clear line and the documented exit code (README, "Exit codes"), for every command."""

from __future__ import annotations

import functools
import sys

import click

from regsync.errors import EXIT_OK, EXIT_RUNTIME, RegsyncError


def run_guarded(fn):
    """One place turns errors into one clear line and the documented exit code."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from regsync.console import fail

        _set_up_logging()
        try:
            code = fn(*args, **kwargs)
        except RegsyncError as exc:
            fail(f"error: {exc}", exit_code=exc.exit_code)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", exit_code=EXIT_RUNTIME)
            sys.exit(EXIT_RUNTIME)
        except Exception as exc:  # a bug of ours: still one line, the traceback only when asked (-vv)
            from loguru import logger

            logger.opt(exception=exc).debug("internal error")
            fail(f"internal error: {type(exc).__name__}: {exc} (rerun with -vv for details)", exit_code=EXIT_RUNTIME)
            sys.exit(EXIT_RUNTIME)
        sys.exit(code or EXIT_OK)
    return wrapper


def _set_up_logging() -> None:
    """The global options' logging (-v/-q, --log-format), once, when a verb actually runs."""
    from regsync.console import setup_logging

    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx else None
    if isinstance(obj, dict) and "logging" in obj:
        verbosity, log_format = obj.pop("logging")
        setup_logging(verbosity, log_format, obj["run_id"])
