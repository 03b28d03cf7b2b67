"""Printing a node-side command's result: one JSON object with ``--json``, ``key: value`` lines without.

``harbour authority`` and ``harbour cluster`` print their results this way
(lists and objects as compact JSON on their line), so a script reads either
with the same parser. The custody API commands print theirs with
:func:`harbour.cli.apiclient.emit`, aligned for reading instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import typer


def emit_document(doc: Mapping[str, Any], as_json: bool) -> None:
    """Print ``doc`` as one JSON line (``as_json``) or as one ``key: value`` line per field."""
    if as_json:
        typer.echo(json.dumps(doc))
    else:
        typer.echo("\n".join(f"{k}: {json.dumps(v) if isinstance(v, list | dict) else v}" for k, v in doc.items()))
