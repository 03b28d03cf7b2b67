"""Harbour: open digital-asset infrastructure."""

__version__ = "0.1.0"
