"""JSON views of custody rows, and keyset pagination.

Each view builds its model from :mod:`harbour.custody.shapes` and returns
``model.model_dump(mode="json")``: callers keep plain JSON-ready dicts, and the
shape is written once, in the model the API also declares as its response.

Amounts leave as decimal strings: JSON numbers are doubles in most clients and
silently round above 2^53 (one wei short of 0.01 ETH). Timestamps are ISO 8601
strings in UTC, written by :func:`iso` (not by pydantic, whose ``Z`` suffix would
change the JSON the API has always sent).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

from harbour.custody import models as m
from harbour.custody.db import Base
from harbour.custody.errors import Invalid
from harbour.custody.shapes import (
    Address,
    AddressBookEntry,
    Approval,
    Asset,
    Deposit,
    GovernanceChange,
    GovernanceTransaction,
    Organisation,
    User,
    Vault,
    WithdrawalTransaction,
)
from harbour.custody.shapes import Policy as PolicyShape
from harbour.governance import changes as c
from harbour.governance.log import Entry

MAX_LIMIT = 200
Row = TypeVar("Row", bound=Base)


@dataclass(frozen=True)
class Page:
    limit: int = 50
    cursor: str | None = None

    def __post_init__(self) -> None:
        if type(self.limit) is not int or not 1 <= self.limit <= MAX_LIMIT:
            raise Invalid(f"limit must be an integer in 1..{MAX_LIMIT}")


def _encode_cursor(at: dt.datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at_text, row_id = text.split("|")
        at = dt.datetime.fromisoformat(at_text)
        if at.tzinfo is None or len(row_id) > 36:
            raise ValueError
        # In UTC here: the database converts it anyway, and 9999-12-31T23:59-01:00 overflows there.
        return at.astimezone(dt.UTC), row_id
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise Invalid("cursor is not one this service issued") from None


encode_cursor = _encode_cursor
decode_cursor = _decode_cursor


def paginate(session: Session, stmt: Select[Row], model: type[Row], page: Page) -> tuple[list[Row], str | None]:
    """Rows in (created_at, id) order after the cursor; the next cursor, or None at the end."""
    created = model.created_at  # type: ignore[attr-defined]
    ident = model.id  # type: ignore[attr-defined]
    if page.cursor is not None:
        at, row_id = _decode_cursor(page.cursor)
        stmt = stmt.where(or_(created > at, and_(created == at, ident > row_id)))
    rows = list(session.scalars(stmt.order_by(created, ident).limit(page.limit + 1)))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    cursor = _encode_cursor(rows[-1].created_at, rows[-1].id) if more else None  # type: ignore[attr-defined]
    return rows, cursor


def page_document(
    session: Session, stmt: Select[Row], model: type[Row], page: Page, view: Callable[[Row], Any]
) -> dict[str, Any]:
    """One page of ``stmt`` as every list route returns it: the rows through ``view``, and the next cursor."""
    rows, cursor = paginate(session, stmt, model, page)
    return {"items": [view(row) for row in rows], "next_cursor": cursor}


def iso(at: dt.datetime | None) -> str | None:
    return None if at is None else at.astimezone(dt.UTC).isoformat()


def amount(value: int | None) -> str | None:
    return None if value is None else str(value)


def organisation(org: m.Organisation, chain_id: int) -> dict[str, Any]:
    return Organisation.model_validate(
        {
            "id": org.id,
            "name": org.name,
            "genesis": org.genesis,
            "chain_id": chain_id,
            "created_at": iso(org.created_at),
        }
    ).model_dump(mode="json")


def user(u: m.User) -> dict[str, Any]:
    return User.model_validate(
        {
            "id": u.id,
            "org_id": u.org_id,
            "name": u.name,
            "roles": sorted(u.roles),
            "approval_key": u.approval_key,
            "disabled": u.disabled,
            "created_at": iso(u.created_at),
        }
    ).model_dump(mode="json")


def vault(v: m.Vault) -> dict[str, Any]:
    return Vault.model_validate(
        {
            "id": v.id,
            "name": v.name,
            "key_id": v.key_id,
            "scheme": v.scheme,
            "threshold": v.threshold,
            "nodes": list(v.nodes),
            "public_key": v.public_key,
            "created_at": iso(v.created_at),
            "archived": v.archived_at is not None,
        }
    ).model_dump(mode="json")


def address(a: m.Address) -> dict[str, Any]:
    return Address.model_validate(
        {
            "id": a.id,
            "vault_id": a.vault_id,
            "index": a.index,
            "path": a.path,
            "address": a.address,
            "label": a.label,
            "created_at": iso(a.created_at),
        }
    ).model_dump(mode="json")


def asset(a: m.Asset) -> dict[str, Any]:
    return Asset.model_validate(
        {
            "id": a.id,
            "symbol": a.symbol,
            "kind": a.kind,
            "contract": a.contract,
            "decimals": a.decimals,
            "disabled": a.disabled,
        }
    ).model_dump(mode="json")


def address_book_entry(e: m.AddressBookEntry) -> dict[str, Any]:
    return AddressBookEntry.model_validate(
        {
            "id": e.id,
            "name": e.name,
            "address": e.address,
            "whitelisted": e.whitelisted,
            "created_at": iso(e.created_at),
        }
    ).model_dump(mode="json")


def approval(a: m.Approval, now: dt.datetime | None = None) -> dict[str, Any]:
    return _approval(a, now).model_dump(mode="json")


def _approval(a: m.Approval, now: dt.datetime | None) -> Approval:
    return Approval.model_validate(
        {
            "approver_id": a.approver_id,
            "decision": a.decision,
            "public_key": a.public_key,
            "signature": a.signature,
            "created_at": iso(a.created_at),
            "expires_at": iso(a.expires_at),
            "expired": a.decision == "approve" and (a.expired or (now is not None and a.expires_at <= now)),
        }
    )


def change_subject(change: c.Change) -> str | None:
    """The id a change gives or names: a user, credential, address-book entry, vault, asset or node's key."""
    if isinstance(change, c.SetQuorum | c.SetPolicy):
        return None
    if isinstance(change, c.AddNode | c.RemoveNode):
        return change.identity_key.hex()
    return change.id


def governance_change(change: c.Change) -> dict[str, Any]:
    return GovernanceChange.model_validate(
        {"op": change.op, "description": c.describe(change), "id": change_subject(change)}
    ).model_dump(mode="json")


def transaction(
    t: m.Transaction,
    approvals: list[m.Approval] | None = None,
    asset_symbol: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """``approvals`` is left out of the view when None (the API always passes them)."""
    common: dict[str, Any] = {
        "id": t.id,
        "kind": t.kind,
        "state": t.state,
        "initiator_id": t.initiator_id,
        "idempotency_key": t.idempotency_key,
        "note": t.note,
        "created_at": iso(t.created_at),
        "updated_at": iso(t.updated_at),
        "policy_version": t.policy_version,
        "decision": t.decision,
        "requirement": t.requirement,
        "error": t.error,
        "sub_status": t.sub_status,
    }
    if approvals is not None:
        common["approvals"] = [_approval(a, now).model_dump(mode="json") for a in approvals]
    view: WithdrawalTransaction | GovernanceTransaction
    if t.kind == "withdrawal":
        view = WithdrawalTransaction.model_validate(
            {
                **common,
                "external_id": t.external_id,
                "vault_id": t.vault_id,
                "source_address_id": t.source_address_id,
                "asset": asset_symbol,
                "destination": t.destination,
                "address_book_entry_id": t.address_book_entry_id,
                "amount": amount(t.amount),
                "initiator_signature": t.initiator_signature,
                "fee_level": t.fee_level,
                "max_fee_per_gas": amount(t.max_fee_per_gas),
                "max_priority_fee_per_gas": amount(t.max_priority_fee_per_gas),
                "gas_limit": t.gas_limit,
                "max_fee": amount(t.max_fee),
                "replaces_id": t.replaces_id,
                "chain_id": t.chain_id,
                "nonce": t.nonce,
                "unsigned": t.unsigned,
                "digest": t.digest,
                "tx_hash": t.tx_hash,
                "signers": t.signers,
                "block_number": t.block_number,
                "gas_used": t.gas_used,
                "fee": amount(t.fee),
                "delivered": amount(t.delivered),
                "sweep": bool(t.sweep),
                "broadcast_at": iso(t.broadcast_at),
            }
        )
    else:
        assert t.entry is not None
        entry = Entry.decode(t.entry)
        view = GovernanceTransaction.model_validate(
            {
                **common,
                "seq": entry.seq,
                "prev": entry.prev.hex(),
                "entry": t.entry.hex(),
                "changes": [governance_change(change) for change in entry.changes],
            }
        )
    return view.model_dump(mode="json", exclude_unset=True)


def policy(p: m.Policy) -> dict[str, Any]:
    return PolicyShape.model_validate(
        {
            "version": p.version,
            "document": p.document,
            "digest": p.digest,
            "seq": p.seq,
            "transaction_id": p.transaction_id,
            "created_at": iso(p.created_at),
        }
    ).model_dump(mode="json")


def deposit(d: m.Deposit, asset_symbol: str | None = None) -> dict[str, Any]:
    return Deposit.model_validate(
        {
            "id": d.id,
            "vault_id": d.vault_id,
            "address_id": d.address_id,
            "asset": asset_symbol,
            "tx_hash": d.tx_hash,
            "log_index": d.log_index,
            "block_number": d.block_number,
            "sender": d.sender,
            "amount": amount(d.amount),
            "state": d.state,
            "created_at": iso(d.created_at),
        }
    ).model_dump(mode="json")
