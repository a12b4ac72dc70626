"""HTTP sessions: origin-bound credentials, retries, bounded reads."""
