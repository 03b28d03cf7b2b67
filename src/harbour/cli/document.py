"""Printing a node-side command's result: one JSON object with ``--json``, ``key: value`` lines without.

``harbour authority`` and ``harbour cluster`` print their results this way
(lists and objects as compact JSON on their line; see :func:`harbour.cli.output.emit`), so a script reads either
with the same parser. The custody API commands print theirs with
:func:`harbour.cli.apiclient.emit`, aligned for reading instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harbour.cli import output


def emit_document(doc: Mapping[str, Any], as_json: bool) -> None:
    """Print ``doc`` as one JSON document (``as_json``) or as one ``key: value`` line per field."""
    output.emit(doc, as_json)
