"""What people see: log setup (text or JSON), progress bars, and the plan table."""

from __future__ import annotations

import json
import sys
import traceback
from contextlib import contextmanager

from loguru import logger
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from regsync.pipeline.plan import Plan

# Piped output (CI logs, `| less`) gets room for full references instead of rich's 80 columns.
stdout = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
stderr = Console(stderr=True)

_LEVELS = {-2: "ERROR", -1: "WARNING", 0: "WARNING", 1: "INFO", 2: "DEBUG"}
# The run's closing line: above WARNING so it shows by default, and dropped under -q when the run
# needed no human (cron mails whatever a job prints, so a quiet success prints nothing).
NOTICE = "NOTICE"
_mode = {"json": False, "quiet": False}


def setup_logging(verbosity: int, log_format: str, run_id: str) -> None:
    logger.remove()
    level = _LEVELS[max(-2, min(2, verbosity))]
    logger.configure(extra={"run_id": run_id})
    try:
        logger.level(NOTICE)
    except ValueError:
        logger.level(NOTICE, no=35)
    _mode.update(json=log_format == "json", quiet=verbosity < 0)
    # diagnose would print every variable of every frame in a traceback (a password three times in
    # one, issue 11); backtrace only adds frames above the handler. A plain traceback names the bug.
    # A closing line that needs a human passes under -qq too: the handler lets NOTICE through and
    # the filter drops the ones nobody needs to read.
    threshold = min(logger.level(level).no, logger.level(NOTICE).no)
    safe = {"level": threshold, "diagnose": False, "backtrace": False, "filter": _filter(logger.level(level).no)}
    if log_format == "json":
        logger.add(_json_sink(sys.stderr), **safe)
    else:
        logger.add(sys.stderr, format=_text_format, colorize=None, **safe)


def _filter(level_no: int):
    def accept(record) -> bool:
        if record["level"].name == NOTICE:
            return not _mode["quiet"] or record["extra"].get("needs_a_human", False)
        return record["level"].no >= level_no
    return accept


# The fields a log pipeline filters on (docs/audit.md, "Logs as JSON"): flat, at the top of each line.
JSON_FIELDS = ("event", "kind", "source", "target", "digest", "action", "reason", "exit_code", "bytes")


def _json_sink(stream):
    """One flat JSON object per line (Loki's `| json`, Elasticsearch's dotless fields): `ts`,
    `level`, `message`, `run_id` and the event's own fields, instead of loguru's nested record."""
    def write(message) -> None:
        record = message.record
        line = {"ts": record["time"].isoformat(timespec="milliseconds"), "level": record["level"].name,
                "message": record["message"], "event": "log"}
        line.update((key, value) for key, value in record["extra"].items() if key != "needs_a_human")
        if record["exception"] is not None:  # only at -vv (an internal error's debug line)
            kind, value, tb = record["exception"]
            line["exception"] = "".join(traceback.format_exception(kind, value, tb))
        stream.write(json.dumps(line, default=str) + "\n")
        stream.flush()
    return write


def _text_format(record) -> str:
    # a closing line or an error reads as a sentence, as it did before there were JSON logs
    return "{message}\n{exception}" if record["level"].name == NOTICE else "<level>{level: <7}</level> {message}\n{exception}"


def say(message: str, *, needs_a_human: bool = False, **fields) -> None:
    """A line for the person running regsync: the run's summary, a closing note. Plain text on stderr,
    one JSON object under --log-format json (`fields` ride along), nothing under -q unless it needs
    a human (a failure, a refusal); never labelled as an error: it is the run's summary."""
    logger.opt(depth=1).bind(needs_a_human=needs_a_human, **fields).log(NOTICE, message)


def fail(message: str, **fields) -> None:
    """An error line that ends the command (usage, policy, runtime): plain `error: …`, or JSON."""
    if _mode["json"]:
        logger.opt(depth=1).bind(event="error", **fields).error(message)
    else:
        logger.remove()  # nothing after the one line
        print(message, file=sys.stderr, flush=True)


def human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def render_plan(plan: Plan, compact: bool = False, full_reasons: bool = False) -> None:
    """The plan as a table, or `compact`: the changes only (copy, update, refuse, errors), one line each."""
    from regsync.audit.report import signer_of  # the report's words for who signed what

    if compact:
        return _render_compact(plan, full_reasons, signer_of)
    styles = {"copy": "green", "update": "yellow", "skip": "dim", "refuse": "red"}
    table = Table(title=f"regsync plan (policy sha256 {plan.policy_sha256[:12]})", title_justify="left")
    signers = [signer_of(item.verification) for item in plan.items]
    columns = ("source", "target", "digest", "action", "size", *(("signer",) if any(signers) else ()), "reason")
    for column in columns:
        table.add_column(column, overflow="fold", justify="right" if column == "size" else "left")
    for item, signer in zip(plan.items, signers):
        short = item.digest.split(":", 1)[-1][:12] if item.digest else "-"
        # names and reasons come from servers (a refused tag is shown as listed): never read as markup
        cells = {"source": escape(item.source), "target": escape(item.target), "digest": short,
                 "action": f"[{styles[item.action]}]{item.action}[/]",
                 "size": human_size(item.bytes) if item.changes else "", "signer": escape(signer),
                 "reason": escape(item.reason)}
        table.add_row(*(cells[column] for column in columns))
    for error in plan.errors:
        cells = {"source": escape(error.source), "digest": "-", "action": "[red]error[/]", "reason": escape(error.reason)}
        table.add_row(*(cells.get(column, "") for column in columns))
    stdout.print(table)
    _plan_totals(plan)


def _render_compact(plan: Plan, full_reasons: bool, signer_of) -> None:
    """One line per change, columns aligned, the target never cut: what does not fit the terminal is
    cut from the end of the line (the reason), whole with `full_reasons` (-v) and in --json."""
    styles = {"copy": "green", "update": "yellow", "refuse": "red", "error": "red"}
    rows = [(item.action, item.target, item.digest.split(":", 1)[-1][:12] if item.digest else "-",
             human_size(item.bytes) if item.changes else "",
             "; ".join(part for part in (signer_of(item.verification) and f"signed by {signer_of(item.verification)}",
                                         item.reason) if part))
            for item in plan.items if item.changes or item.action == "refuse"]
    rows += [("error", error.source, "-", "", error.reason) for error in plan.errors]
    stdout.print(Text(f"regsync plan (policy sha256 {plan.policy_sha256[:12]}): the changes", style="bold"))
    widths = [max((len(row[n]) for row in rows), default=0) for n in range(4)]
    for row in rows:
        head = "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths))
        tail = row[4] if full_reasons else _first_line(row[4], limit=10_000)
        line = f"{head}  {tail}".rstrip()
        if not full_reasons and len(line) > stdout.width:
            line = line[:max(len(head), stdout.width - 1)].rstrip() + "…"
        stdout.print(Text(line, style=styles.get(row[0], "")), soft_wrap=True)
    _plan_totals(plan, hidden=True)


def _plan_totals(plan: Plan, hidden: bool = False) -> None:
    counts = {a: sum(1 for i in plan.items if i.action == a) for a in ("copy", "update", "skip", "refuse")}
    total = sum(i.bytes for i in plan.items if i.changes)
    note = f" (not shown: {counts['skip']} unchanged; full reasons: --json or -v)" if hidden else ""
    stdout.print(f"{counts['copy']} to copy, {counts['update']} to update, {counts['skip']} unchanged, "
                 f"{counts['refuse']} refused, {len(plan.errors)} error(s); {human_size(total)} to move{note}")


def _first_line(reason: str, limit: int = 80) -> str:
    """A reason cut to one line: its first sentence or clause, at most `limit` characters."""
    line = reason.splitlines()[0] if reason else ""
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


class _Speed(ProgressColumn):
    def render(self, task):
        return Text(f"{human_size(int(task.speed))}/s" if task.speed else "?", style="progress.data.speed")


@contextmanager
def byte_progress(total: int, enabled: bool):
    """Yields an on_bytes callback; draws a bar on a TTY only."""
    if not enabled or not stderr.is_terminal:
        yield None
        return
    # binary units, as in the plan and the summary (rich's own speed column is decimal only)
    columns = (TextColumn("copying"), BarColumn(), DownloadColumn(binary_units=True), _Speed(), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task("copy", total=total or None)
        yield lambda n: progress.advance(task, n)
