"""Leaf helpers every layer may use: atomic writes, cache paths, the user-error type."""
