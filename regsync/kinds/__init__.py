"""Kinds of artifact: each is one folder here behind the Kind protocol; registry.py lists them
(docs/architecture.md, "The Kind protocol")."""
