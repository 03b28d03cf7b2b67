"""Sending a run of an address's signed withdrawals, and what waits to be sent, as the database has it.

:class:`harbour.custody.sender.OrderedSender` decides what goes out and in what
order; these are the two things it is given: the database's list of an
address's withdrawals that have a nonce and are not sent yet (never a process's
memory, so any service process may send what another signed), and the send of a
run, each transaction from its committed signed bytes, committed as
``broadcast`` together after it went out.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbour.chains.evm import ChainError, EvmClient
from harbour.custody import models as m
from harbour.custody import outcomes, states
from harbour.custody.sender import OBSOLETE, RETRY, SENT, Waiting
from harbour.custody.uow import UnitOfWork
from harbour.util import logs

log = logging.getLogger(__name__)


def send_run(uow: UnitOfWork, chain: EvmClient, address: str, run: list[tuple[int, str]]) -> list[str]:
    """Send a run of consecutive transactions from ``address`` in nonce order, then commit them as broadcast.

    The signed bytes were committed before this (``signing`` with ``raw``), so a crash
    between a send and the commit only means the same bytes are sent again after the
    restart, which the node answers with the same hash.
    """
    with uow.read() as s:
        rows = {
            r.id: (r.nonce, r.state, r.raw)
            for r in s.execute(
                select(m.Transaction.id, m.Transaction.nonce, m.Transaction.state, m.Transaction.raw).where(
                    m.Transaction.id.in_([tx_id for _, tx_id in run])
                )
            )
        }
    results: list[str] = []
    sent: list[tuple[int, str]] = []
    for nonce, tx_id in run:
        tx_nonce, state, raw = rows.get(tx_id, (None, None, None))
        if tx_nonce != nonce:  # gone, or its nonce was released
            results.append(OBSOLETE)
            break
        if state in (states.BROADCAST, states.CONFIRMED):
            results.append(SENT)
            continue
        if state != states.SIGNING or raw is None:
            results.append(OBSOLETE)
            break
        try:
            chain.send_raw(bytes.fromhex(raw))
        except ChainError as exc:
            with logs.bound(transaction_id=tx_id):  # a run may send others' after the one whose worker drains it
                log.warning("withdrawal %s (nonce %d): send failed: %s", tx_id, nonce, exc)
            _send_failed(uow, tx_id, str(exc))
            results.append(RETRY)
            break
        sent.append((nonce, tx_id))
        results.append(SENT)
        with logs.bound(transaction_id=tx_id):
            log.info("withdrawal %s (nonce %d): sent to the chain", tx_id, nonce)
    if sent:

        def record(s: Session) -> None:
            now = uow.clock()
            for nonce, tx_id in sent:
                tx = s.get(m.Transaction, tx_id, with_for_update=True)
                assert tx is not None
                if tx.state == states.SIGNING:
                    tx.broadcast_at = now
                    outcomes.clear(tx)
                    uow.move(s, None, tx, states.BROADCAST, tx_hash=tx.tx_hash, nonce=nonce)

        uow.write(record)
    return results


def _send_failed(uow: UnitOfWork, tx_id: str, why: str) -> None:
    def work(s: Session) -> None:
        tx = s.get(m.Transaction, tx_id)
        assert tx is not None
        outcomes.record(tx, outcomes.BROADCAST_RETRY, f"broadcast failed, will retry: {why}")

    uow.write(work)


def waiting(uow: UnitOfWork, address: str) -> list[Waiting]:
    """The address's withdrawals that have a nonce and are not sent yet, as the database has them now."""
    with uow.read() as s:
        rows = s.execute(
            select(m.Transaction.nonce, m.Transaction.id, m.Transaction.raw.is_not(None))
            .join(m.Address, m.Address.id == m.Transaction.source_address_id)
            .where(
                m.Address.address == address,
                m.Transaction.kind == "withdrawal",
                m.Transaction.state == states.SIGNING,
                m.Transaction.nonce.is_not(None),
            )
        )
        return [Waiting(nonce, tx_id, bool(signed)) for nonce, tx_id, signed in rows if nonce is not None]
