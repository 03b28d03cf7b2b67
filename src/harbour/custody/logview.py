"""The governance log as the API shows it: its entries, decoded, and its head.

Each entry is served with its signed encoding, so a reader (an auditor, a
signer node catching up) verifies it anew rather than trusting the decoding
beside it; the decoding (``changes.describe``) is for people. Entries are paged
by sequence number, which is their order and never changes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from harbour.custody import models as m
from harbour.custody import views
from harbour.custody.actors import ANYONE, Actor, require
from harbour.custody.errors import Invalid
from harbour.custody.ledger import Ledger
from harbour.custody.shapes import GovernanceEntry, GovernanceHead
from harbour.custody.uow import UnitOfWork
from harbour.custody.views import Page
from harbour.governance.log import SignedEntry
from harbour.governance.state import OrgState


def _after(cursor: str | None) -> int:
    if cursor is None:
        return -1
    if not cursor.isdigit() or len(cursor) > 18:
        raise Invalid("cursor is not one this service issued")
    return int(cursor)


def entry_view(signed: SignedEntry, state: OrgState, transaction_id: str | None) -> dict[str, Any]:
    entry = signed.entry
    signers = []
    for public, _ in signed.signatures:
        holder = state.user_by_key(public)
        signers.append({"public_key": public.hex(), "user_id": None if holder is None else holder.id})
    return GovernanceEntry.model_validate(
        {
            "seq": entry.seq,
            "hash": signed.hash.hex(),
            "prev": entry.prev.hex(),
            "proposer": entry.proposer,
            "at": views.iso(dt.datetime.fromtimestamp(entry.at, dt.UTC)),
            "changes": [views.governance_change(change) for change in entry.changes],
            "signers": signers,
            "transaction_id": transaction_id,
            "signed": signed.encode().hex(),
        }
    ).model_dump(mode="json")


class LogView:
    def __init__(self, uow: UnitOfWork, ledger: Ledger) -> None:
        self.uow = uow
        self.ledger = ledger

    def entries(self, actor: Actor, page: Page) -> dict[str, Any]:
        """The log's entries in order, each decoded; signers are named by who holds their key now."""
        require(actor, *ANYONE)
        after = _after(page.cursor)
        with self.uow.read() as s:
            state = self.ledger.state(s, actor.org_id)
            entries = self.ledger.entries(s, actor.org_id, after, page.limit + 1)
            rows = s.execute(
                select(m.GovernanceEntry.seq, m.GovernanceEntry.transaction_id).where(
                    m.GovernanceEntry.org_id == actor.org_id,
                    m.GovernanceEntry.seq.in_([e.entry.seq for e in entries]),
                )
            )
            proposals = {seq: tx for seq, tx in rows}
        more = len(entries) > page.limit
        entries = entries[: page.limit]
        items = [entry_view(signed, state, proposals.get(signed.entry.seq)) for signed in entries]
        return {"items": items, "next_cursor": str(entries[-1].entry.seq) if more else None}

    def head(self, actor: Actor) -> dict[str, Any]:
        require(actor, *ANYONE)
        with self.uow.read() as s:
            state = self.ledger.state(s, actor.org_id)
            version = self.ledger.policy_version(s, actor.org_id)
            genesis = s.scalar(select(m.Organisation.genesis).where(m.Organisation.id == actor.org_id))
        return GovernanceHead.model_validate(
            {
                "org": state.org,
                "seq": state.seq,
                "hash": state.head.hex(),
                "genesis": genesis,
                "quorum": state.quorum,
                "admins": sorted(state.admins().values()),
                "policy_version": version,
            }
        ).model_dump(mode="json")
