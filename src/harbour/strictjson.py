"""Moved to :mod:`harbour.util.strictjson`; this name stays importable."""

from harbour.util.strictjson import MAX_DEPTH, nesting_depth

__all__ = ["MAX_DEPTH", "nesting_depth"]
