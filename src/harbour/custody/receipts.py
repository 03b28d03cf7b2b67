"""Confirmations: broadcast withdrawals followed to a receipt deep enough to call them final.

Receipts are not polled one by one on every pass (with hundreds in flight that
is thousands of calls a second): each new block's transaction list is read
once, and a receipt is fetched only for our transactions found in it. A receipt
counts once it is ``confirmations`` blocks deep and, when that is more than one,
still where it was (a reorganisation sends the transaction back to waiting).
"""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbour.chains.evm import EvmClient, Receipt
from harbour.custody import models as m
from harbour.custody import outcomes, states, tokencheck
from harbour.custody.settings import Settings
from harbour.custody.uow import UnitOfWork


class Confirmations:
    """What the confirmation loop remembers between passes: the last block read, receipts mined but not deep."""

    def __init__(self, uow: UnitOfWork, chain: EvmClient, settings: Settings) -> None:
        self.uow = uow
        self.chain = chain
        self.settings = settings
        self._cursor: int | None = None
        self._mined: dict[str, Receipt] = {}
        self._unseen: dict[str, float] = {}

    def once(self) -> int:
        """Move broadcast withdrawals whose receipt is deep enough to confirmed (or failed if reverted).

        The first pass after a start, which cannot know what was mined while the
        service was down, asks for the receipt of every broadcast withdrawal.
        Returns how many were finished.
        """
        head = self.chain.block_number()
        with self.uow.read() as s:
            rows = list(
                s.execute(
                    select(m.Transaction.id, m.Transaction.tx_hash).where(m.Transaction.state == states.BROADCAST)
                )
            )
        pending = {h: i for i, h in rows if h is not None}
        now = time.monotonic()
        for tx_hash in list(self._mined):
            if tx_hash not in pending:
                del self._mined[tx_hash]
        candidates: set[str]
        if self._cursor is None:
            candidates = set(pending)
        else:
            candidates = set()
            for number in range(self._cursor + 1, head + 1):
                found = {"0x" + h.hex() for h in self.chain.block_transaction_hashes(number)}
                candidates |= found & set(pending)
        self._cursor = head
        # A transaction mined before its row said `broadcast` is in a block already passed: ask directly,
        # at most once a second, for any that stays unaccounted for.
        for tx_hash in set(pending) - set(self._mined) - candidates:
            first = self._unseen.setdefault(tx_hash, now)
            if now - first >= 1.0:
                candidates.add(tx_hash)
                self._unseen[tx_hash] = now
        for tx_hash in list(self._unseen):
            if tx_hash not in pending or tx_hash in self._mined:
                del self._unseen[tx_hash]
        for tx_hash in candidates - set(self._mined):
            receipt = self.chain.receipt(bytes.fromhex(tx_hash[2:]))
            if receipt is not None:
                self._mined[tx_hash] = receipt
        deep: list[tuple[str, str, Receipt]] = []
        for tx_hash, receipt in list(self._mined.items()):
            if head - receipt.block_number + 1 < self.settings.confirmations:
                continue
            if self.settings.confirmations > 1:  # deep enough by the cached receipt: make sure it is still there
                fresh = self.chain.receipt(bytes.fromhex(tx_hash[2:]))
                if fresh is None or fresh.block_number != receipt.block_number:
                    del self._mined[tx_hash]  # reorganised away: it is found again when mined again
                    continue
            deep.append((tx_hash, pending[tx_hash], receipt))
        if deep:
            self._finish([(tx_id, receipt) for _, tx_id, receipt in deep])
            for tx_hash, _, _ in deep:
                del self._mined[tx_hash]
        return len(deep)

    def _finish(self, mined: list[tuple[str, Receipt]]) -> None:
        """Record the outcome of withdrawals mined deep enough, all in one commit."""
        uow = self.uow

        def record(s: Session) -> None:
            for tx_id, receipt in mined:
                tx = s.get(m.Transaction, tx_id, with_for_update=True)
                assert tx is not None
                if tx.state != states.BROADCAST:
                    continue
                tx.block_number, tx.gas_used = receipt.block_number, receipt.gas_used
                tx.fee = receipt.gas_used * receipt.effective_gas_price
                token = tokencheck.of_withdrawal(s, tx, receipt)  # a token's Transfer event, not its return value
                if token is not None:
                    tokencheck.note(tx, token)
                if receipt.status == 1 and (token is None or not token.failed):
                    delivered = {} if token is None else {"delivered": str(token.delivered)}
                    uow.move(
                        s,
                        None,
                        tx,
                        states.CONFIRMED,
                        block=receipt.block_number,
                        gas_used=receipt.gas_used,
                        **delivered,
                    )
                elif token is not None:
                    uow.move(s, None, tx, states.FAILED, block=receipt.block_number, reason=token.code)
                else:
                    outcomes.record(tx, outcomes.REVERTED, "the transaction reverted on chain")
                    uow.move(s, None, tx, states.FAILED, block=receipt.block_number, reason="reverted")

        uow.write(record)
