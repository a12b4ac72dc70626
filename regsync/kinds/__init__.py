"""Kinds of artifact: each is one folder here behind the Kind protocol (docs/architecture.md)."""
