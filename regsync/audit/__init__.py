"""The chained JSONL audit trail (log.py), its verification, index, report and merge."""


def __getattr__(name: str):
    # `from regsync.audit import AuditLog` still works, but importing the package (as
    # regsync.audit.events does) does not pull in the writer and its signing libraries
    if name == "AuditLog":
        from regsync.audit.log import AuditLog

        return AuditLog
    raise AttributeError(name)
