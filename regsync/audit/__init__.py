from regsync.audit.log import AuditLog  # noqa: F401
