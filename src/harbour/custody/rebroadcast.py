"""Broadcast transactions the chain forgot: sent again from their committed bytes, or settled as replaced or dropped.

A node's pool may drop a transaction it accepted (restarted, evicted under
load, a fee too low for too long). Its row then says ``broadcast`` for ever,
and every later withdrawal from the address waits behind its nonce. So every
broadcast transaction that has waited :data:`AFTER` seconds is looked for
(``eth_getTransactionByHash``), at most once per that interval:

- known to the node (pending or mined): nothing to do, receipts follow it;
- unknown, and its nonce not yet used: the **same signed bytes** committed
  before the first send are sent again: nothing is signed anew, so this needs no
  approval and cannot pay anything else;
- unknown, and its nonce used: another transaction took it. If that is one of
  ours at the same nonce (a speed-up or cancel, or the original a replacement
  was racing), this one failed as ``replaced``; otherwise as ``dropped``. Its
  address is then free again: nothing waits behind it.

A replacement that was signed but never sent before its nonce was taken is
settled the same way, since sending it can only fail. Everything is read from
the database and the chain, so a restarted service picks up where it was.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Final

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from harbour.chains.evm import ChainError, EvmClient
from harbour.custody import models as m
from harbour.custody import outcomes, states
from harbour.custody.uow import UnitOfWork

log = logging.getLogger(__name__)

AFTER: Final = 30.0
"""Seconds a broadcast transaction waits before it is looked for (and between two looks)."""


@dataclass(frozen=True)
class _Sent:
    id: str
    org_id: str
    state: str
    tx_hash: str
    raw: str
    nonce: int
    source_address_id: str
    address: str


class Rebroadcast:
    """What the sweep remembers between passes: when each transaction was last looked for."""

    def __init__(self, uow: UnitOfWork, chain: EvmClient, *, after: float = AFTER) -> None:
        self.uow = uow
        self.chain = chain
        self.after = after
        self._looked: dict[str, float] = {}

    def once(self) -> int:
        """One pass; returns how many transactions were sent again or settled."""
        now = time.monotonic()
        cutoff = self.uow.clock().timestamp() - self.after
        with self.uow.read() as s:
            rows = [
                _Sent(r.id, r.org_id, r.state, r.tx_hash, r.raw, r.nonce, r.source_address_id, r.address)
                for r in s.execute(
                    select(
                        m.Transaction.id,
                        m.Transaction.org_id,
                        m.Transaction.state,
                        m.Transaction.tx_hash,
                        m.Transaction.raw,
                        m.Transaction.nonce,
                        m.Transaction.source_address_id,
                        m.Transaction.broadcast_at,
                        m.Transaction.updated_at,
                        m.Address.address,
                    )
                    .join(m.Address, m.Address.id == m.Transaction.source_address_id)
                    .where(
                        m.Transaction.tx_hash.is_not(None),
                        m.Transaction.raw.is_not(None),
                        m.Transaction.nonce.is_not(None),
                        or_(
                            m.Transaction.state == states.BROADCAST,
                            (m.Transaction.state == states.SIGNING) & m.Transaction.replaces_id.is_not(None),
                        ),
                    )
                )
                if (r.broadcast_at or r.updated_at).timestamp() <= cutoff
            ]
        live = {r.id for r in rows}
        for tx_id in list(self._looked):
            if tx_id not in live:
                del self._looked[tx_id]
        done = 0
        for row in rows:
            if now - self._looked.get(row.id, -self.after) < self.after:
                continue
            self._looked[row.id] = now
            try:
                done += self._look(row)
            except ChainError as exc:
                log.warning("transaction %s: could not look for it on chain: %s", row.id, exc)
        return done

    def _look(self, row: _Sent) -> int:
        if self.chain.transaction_known(bytes.fromhex(row.tx_hash[2:])):
            return 0
        siblings = self._siblings(row)
        if self.chain.nonce(row.address, "latest") <= row.nonce:
            if row.state != states.BROADCAST:
                return 0  # a replacement not sent yet: the sender sends it
            if any(self.chain.transaction_known(h) for _, h in siblings):
                return 0  # a replacement took its place in the pool: that one is the one to wait for
            self.chain.send_raw(bytes.fromhex(row.raw))
            log.info("transaction %s (nonce %d) was forgotten by the chain: sent again", row.id, row.nonce)
            with self.uow.tx() as s:
                self.uow.event(s, None, "transaction.rebroadcast", row.id, org_id=row.org_id, tx_hash=row.tx_hash)
            return 1
        winner = next(((i, h) for i, h in siblings if self.chain.receipt(h) is not None), None)
        self.uow.write(lambda s: self._settle(s, row, winner))
        return 1

    def _siblings(self, row: _Sent) -> list[tuple[str, bytes]]:
        """``(id, hash)`` of our other signed transactions at ``row``'s nonce (its replacements, or its original)."""
        with self.uow.read() as s:
            return [
                (sibling_id, bytes.fromhex(sibling_hash[2:]))
                for sibling_id, sibling_hash in s.execute(
                    select(m.Transaction.id, m.Transaction.tx_hash).where(
                        m.Transaction.source_address_id == row.source_address_id,
                        m.Transaction.nonce == row.nonce,
                        m.Transaction.id != row.id,
                        m.Transaction.tx_hash.is_not(None),
                    )
                )
                if sibling_hash is not None
            ]

    def _settle(self, s: Session, row: _Sent, winner: tuple[str, bytes] | None) -> None:
        tx = s.get(m.Transaction, row.id, with_for_update=True)
        if tx is None or tx.state != row.state:
            return
        if winner is not None:
            text = f"transaction {winner[0]} (0x{winner[1].hex()}) was mined at nonce {row.nonce} instead"
            outcomes.record(tx, outcomes.REPLACED, text)
            self.uow.move(s, None, tx, states.FAILED, reason=text, replaced_by=winner[0])
        else:
            text = (
                f"the chain forgot it and nonce {row.nonce} of {row.address} was used by a transaction "
                "this service did not send"
            )
            outcomes.record(tx, outcomes.DROPPED, text)
            self.uow.move(s, None, tx, states.FAILED, reason=text)
