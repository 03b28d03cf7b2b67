"""What the audit log says the business rows are: row digests on events, and a database's rows compared with them.

The log's leaves prove that the events were not altered; they say nothing of the
rows the service acts on (a user's roles, an approval key, a whitelisting, a
pending withdrawal's destination). So each event carries, under ``data["rows"]``,
a digest of every business row its unit of work wrote, and ``harbour audit
verify`` recomputes the digest of every row the database holds and compares it
with the digest of the last event that wrote that row. A row edited in SQL, or
inserted or deleted behind the service's back, no longer matches.

Like :mod:`harbour.custody.auditproof`, this module imports neither SQLAlchemy
nor the service: an auditor who exports the tables by other means checks them
with :class:`RowLedger` alone. :mod:`harbour.custody.rowwatch` is the service's
side (which rows a unit of work wrote, reading them back).

An event's rows, in its data::

    "rows": {"users": {"<id>": {"digest": "<64 hex>", "fields": "<8 hex per field>", "was": "<64 hex>" | null}}}

``digest`` is SHA-256 of ``"harbour/audit-row/v1/" table 0x00`` followed by the
canonical JSON (:func:`~harbour.custody.auditproof.canonical_json`) of
``[id, {field: value, ...}]`` over the table's fields in :data:`TABLES`
(timestamps in :func:`~harbour.custody.auditproof.format_time` form).
``fields`` holds, per field in that order, the first 4 bytes of SHA-256 of
``"harbour/audit-row-field/v1/" table 0x00`` and the canonical JSON of
``[id, field, value]``: too short to bind anything (the digest does that), long
enough to name the fields an edit changed. ``digest`` and ``fields`` are null
for a row the event deleted. ``was`` is the digest of the row as the event's
unit of work found it (null for a row it created): it must be the digest the
log last wrote for that row, or the row was edited behind the log's back before
the service wrote over it, and would otherwise be vouched for from then on. See
docs/audit.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from harbour.custody.auditproof import HASH_HEX, canonical_json, format_time

ROWS_KEY: Final = "rows"
"""Where an event's data holds the digests of the rows it wrote; the service refuses callers' data with this key."""
ROW_DOMAIN: Final = b"harbour/audit-row/v1/"
FIELD_DOMAIN: Final = b"harbour/audit-row-field/v1/"
TAG_HEX: Final = 8
"""Hex digits of a field tag (4 bytes)."""
MAX_ID: Final = 64

TABLES: Final[Mapping[str, tuple[str, ...]]] = {
    "organisations": ("name", "genesis"),
    "users": ("org_id", "name", "roles", "approval_key", "disabled"),
    "credentials": ("user_id", "secret_hash", "revoked_at", "expires_at", "scopes", "allow", "signing_key"),
    "vaults": ("org_id", "name", "key_id", "scheme", "threshold", "nodes", "public_key", "chain_code"),
    "addresses": ("vault_id", "index", "path", "address"),
    "assets": ("org_id", "symbol", "kind", "contract", "decimals"),
    "address_book": ("org_id", "name", "address", "whitelisted", "created_by", "removed_at"),
    "policies": ("org_id", "version", "document", "digest", "transaction_id"),
    "transactions": (
        "org_id",
        "kind",
        "state",
        "initiator_id",
        "created_at",
        "vault_id",
        "source_address_id",
        "asset_id",
        "destination",
        "address_book_entry_id",
        "amount",
        "chain_id",
        "policy_version",
        "entry",
        "requirement",
        "nonce",
        "unsigned",
        "digest",
        "raw",
        "tx_hash",
        "signers",
    ),
    "approvals": ("transaction_id", "approver_id", "decision", "public_key", "signature", "expires_at"),
    "deposits": (
        "org_id",
        "vault_id",
        "address_id",
        "asset_id",
        "tx_hash",
        "log_index",
        "block_number",
        "sender",
        "amount",
        "state",
    ),
}
"""The rows the log vouches for, and in each the fields it covers, in digest order.

Left out on purpose: counters the service moves on its own (a vault's next
address index, an address's next nonce), timestamps nothing decides on, and what
is only shown (labels, notes, errors, a withdrawal's policy explanation, receipt
figures); see docs/audit.md. The governance log's own table is not here: its
entries are signed by the admins and chained from the genesis hash each
organisation row keeps (covered), so every replay finds an edited entry.
"""

_ENTRY_KEYS = frozenset({"digest", "fields", "was"})
_TAGS = {table: re.compile(f"[0-9a-f]{{{TAG_HEX * len(fields)}}}") for table, fields in TABLES.items()}


def _value(value: Any) -> Any:
    """A column's value in the form the digest encodes: timestamps as the log writes them, the rest as JSON."""
    if isinstance(value, dt.datetime):
        return format_time(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _prefix(domain: bytes, table: str) -> bytes:
    return domain + table.encode() + b"\x00"


def row_entry(table: str, row_id: str, values: Mapping[str, Any]) -> dict[str, str]:
    """The digest and field tags of row ``row_id`` of ``table`` with column ``values`` (every field of the table).

    An event's entry is this with the row's ``was`` (:func:`written`).
    """
    fields = TABLES[table]
    # Each value is encoded once and spliced in: the bytes are canonical_json([row_id, {...}]) and
    # canonical_json([row_id, name, value]) exactly, at a third of the cost (this runs for every row written).
    key = canonical_json(row_id)
    encoded = {name: canonical_json(_value(values[name])) for name in fields}
    body = b",".join(canonical_json(name) + b":" + encoded[name] for name in sorted(fields))
    digest = hashlib.sha256(_prefix(ROW_DOMAIN, table) + b"[" + key + b",{" + body + b"}]").hexdigest()
    tag_prefix = _prefix(FIELD_DOMAIN, table) + b"[" + key + b","
    tags = "".join(
        hashlib.sha256(tag_prefix + canonical_json(name) + b"," + encoded[name] + b"]").hexdigest()[:TAG_HEX]
        for name in fields
    )
    return {"digest": digest, "fields": tags}


def written(state: Mapping[str, str] | None, was: str | None) -> dict[str, str | None]:
    """An event's entry for a row: its :func:`row_entry` now (None: deleted), and its digest before (None: new)."""
    if state is None:
        return {"digest": None, "fields": None, "was": was}
    return {"digest": state["digest"], "fields": state["fields"], "was": was}


def _hash_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and HASH_HEX.fullmatch(value) is not None)


def check_rows(rows: Any) -> str | None:
    """Why ``rows`` (an event's ``data["rows"]``) is not well formed, or None if it is."""
    if not isinstance(rows, dict):
        return "its rows are not an object"
    for table, entries in rows.items():
        if table not in TABLES:
            return f"its rows name an unknown table {table!r}"
        if not isinstance(entries, dict) or not entries:
            return f"its rows of {table} are not a non-empty object"
        for row_id, entry in entries.items():
            if not 0 < len(row_id) <= MAX_ID:
                return f"a row id of {table} is not 1..{MAX_ID} characters"
            if not isinstance(entry, dict) or entry.keys() != _ENTRY_KEYS:
                return f"the entry of {table} {row_id} is not {{digest, fields, was}}"
            digest, tags = entry["digest"], entry["fields"]
            if not _hash_or_none(digest) or not _hash_or_none(entry["was"]):
                return f"the digests of {table} {row_id} are not null or 64 lowercase hex digits"
            if digest is None and tags is None:
                continue
            if digest is None or not isinstance(tags, str) or not _TAGS[table].fullmatch(tags):
                return f"the field tags of {table} {row_id} are not {TAG_HEX} hex digits for each of its fields"
    return None


@dataclass(frozen=True)
class RowFinding:
    """A row the log does not explain: what ``harbour audit verify`` lists beside the log's own checks."""

    table: str
    row_id: str
    problem: str
    """``changed`` (since its last event), ``unlogged`` (no event wrote it), ``missing`` (the log wrote it, the
    database lacks it), ``deleted`` (the log deleted it, the database holds it) or ``overwritten`` (the service
    wrote over it at event ``index`` when it was not as the log had left it)."""
    fields: tuple[str, ...] = ()
    """For ``changed``: the fields whose tags differ (empty when the tags cannot tell)."""
    index: int | None = None
    """The last event that wrote the row, if any; for ``overwritten``, the event that wrote over the edit."""

    def describe(self) -> str:
        where = f"{self.table} {self.row_id}"
        if self.problem == "changed":
            what = ", ".join(self.fields) if self.fields else "fields the tags cannot tell"
            return f"{where}: {what} changed since event {self.index} wrote it"
        if self.problem == "unlogged":
            return f"{where}: no audit event wrote this row"
        if self.problem == "missing":
            return f"{where}: event {self.index} wrote this row, the database no longer holds it"
        if self.problem == "overwritten":
            return f"{where}: edited behind the log's back before event {self.index} wrote over it"
        return f"{where}: event {self.index} deleted this row, the database holds it"

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "id": self.row_id,
            "problem": self.problem,
            "fields": list(self.fields),
            "event": self.index,
            "description": self.describe(),
        }


class RowLedger:
    """The rows as the log left them: fed the events in index order, then asked about each row of the database.

    Holds one entry per row the log ever wrote (its digest, its tags and the event's
    index), so memory grows with the number of rows, not of events. Rows the service
    wrote over when they were not as the log had left them are collected in
    :attr:`overwritten` as the events go by.
    """

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], tuple[str | None, str | None, int]] = {}
        self.overwritten: list[RowFinding] = []

    def add(self, index: int, data: Any) -> str | None:
        """Take event ``index``'s rows (from its ``data``); returns why they are malformed, or None."""
        if not isinstance(data, dict) or ROWS_KEY not in data:
            return None
        rows = data[ROWS_KEY]
        problem = check_rows(rows)
        if problem is not None:
            return f"event {index} is signed but {problem}"
        for table, entries in rows.items():
            for row_id, entry in entries.items():
                before = self._rows.get((table, row_id))
                if entry["was"] != (before[0] if before is not None else None):
                    self.overwritten.append(RowFinding(table, row_id, "overwritten", index=index))
                self._rows[table, row_id] = (entry["digest"], entry["fields"], index)
        return None

    def check(self, table: str, row_id: str, values: Mapping[str, Any]) -> RowFinding | None:
        """Compare the database's row with the log's; each row is asked about once (it is then forgotten)."""
        logged = self._rows.pop((table, row_id), None)
        if logged is None:
            return RowFinding(table, row_id, "unlogged")
        digest, tags, index = logged
        if digest is None or tags is None:
            return RowFinding(table, row_id, "deleted", index=index)
        now = row_entry(table, row_id, values)
        if now["digest"] == digest:
            return None
        names = TABLES[table]
        changed = tuple(
            name
            for i, name in enumerate(names)
            if now["fields"][i * TAG_HEX : (i + 1) * TAG_HEX] != tags[i * TAG_HEX : (i + 1) * TAG_HEX]
        )
        return RowFinding(table, row_id, "changed", changed, index)

    def missing(self) -> Iterator[RowFinding]:
        """The rows the log says exist that were never asked about: the database no longer holds them."""
        for (table, row_id), (digest, _, index) in sorted(self._rows.items()):
            if digest is not None:
                yield RowFinding(table, row_id, "missing", index=index)
