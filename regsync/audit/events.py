"""The per-artifact events of the audit trail: a module of its own so the CLI's `--event` choice
and the metrics name them without importing the trail's writer (and its signing libraries)."""

EVENTS = ("resolved", "verified", "pushed", "skipped", "refused", "failed")
