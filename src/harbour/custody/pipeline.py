"""From ``approved`` to ``confirmed``: nonces, MPC signing, ordered broadcast, receipts, deposits.

Exactly-once is the point of this module. A withdrawal gets its nonce (and its
whole unsigned transaction) in the same database commit that moves it to
``signing``; the signed bytes are committed before they are sent; and after a
restart a withdrawal is finished from what was committed:

- ``approved``: not yet built; build it now.
- ``signing`` without signed bytes: sign the *same* unsigned transaction again
  (same nonce), so at most one of the two signatures can ever be mined.
- ``signing`` with signed bytes: send the same bytes again; a node that has
  them already answers with the same hash.
- ``broadcast``: wait for the receipt.

Nonces are assigned from a per-address counter under a row lock, so concurrent
withdrawals from one address get contiguous nonces. Signing runs in parallel,
but transactions are sent in nonce order per address (a node may refuse a nonce
gap, and the embedded chain does), by :class:`harbour.custody.sender.OrderedSender`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbour.chains.eip1559 import Eip1559Transaction, erc20_transfer_data, parse_address, transaction_hash
from harbour.chains.evm import ChainError, Receipt
from harbour.custody import evidence, states
from harbour.custody import models as m
from harbour.custody.sender import OBSOLETE, RETRY, SENT, OrderedSender
from harbour.custody.service import ETH_TRANSFER_GAS, Custody, Funds
from harbour.node.coordinator import ClusterError

log = logging.getLogger(__name__)

SIGN_ATTEMPTS = 3
RETRY_DELAY = 0.5
TOKEN_GAS_FLOOR = 60_000
PERMANENT = frozenset({"approval", "bad-request", "unknown-key", "malformed", "bad-key-file"})
"""Refusals that a retry cannot change; anything else (a node down, a session aborted) is retried."""


class _Unfunded(Exception):
    """The source cannot pay a withdrawal at the fee it would be built with."""


class Pipeline:
    def __init__(self, custody: Custody, *, workers: int = 16, poll: float = 0.1, deposit_poll: float = 0.5) -> None:
        self.custody = custody
        self.poll = poll
        self.deposit_poll = deposit_poll
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="harbour-sign")
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sender = OrderedSender(self._broadcast, lambda a: self.custody.chain.nonce(a, "pending"))
        self._inflight: set[str] = set()
        self._inflight_lock = threading.Lock()
        self._confirm_cursor: int | None = None
        self._mined: dict[str, Receipt] = {}
        self._unseen: dict[str, float] = {}
        custody.on_approved = self.submit

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        self.recover()
        for target, name in (
            (self._confirm_loop, "confirm"),
            (self._deposit_loop, "deposits"),
            (self._sweep_loop, "sweep"),
        ):
            thread = threading.Thread(target=target, name=f"harbour-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for thread in self._threads:
            thread.join(timeout=10)

    def recover(self) -> None:
        """Pick up every withdrawal a previous run left between ``approved`` and ``broadcast``."""
        with self.custody._read() as s:
            ids = list(
                s.scalars(
                    select(m.Transaction.id)
                    .where(
                        m.Transaction.kind == "withdrawal", m.Transaction.state.in_([states.APPROVED, states.SIGNING])
                    )
                    .order_by(m.Transaction.nonce, m.Transaction.created_at)
                )
            )
        for tx_id in ids:
            self.submit(tx_id)

    def submit(self, tx_id: str) -> None:
        with self._inflight_lock:
            if tx_id in self._inflight:
                return
            self._inflight.add(tx_id)
        try:
            self._pool.submit(self._process, tx_id)
        except RuntimeError:  # shutting down: the next start recovers it
            with self._inflight_lock:
                self._inflight.discard(tx_id)

    # -- one withdrawal ---------------------------------------------------------------------------------

    def _process(self, tx_id: str) -> None:
        try:
            prepared = self._prepare(tx_id)
            if prepared is None:
                return
            address, nonce, has_raw = prepared
            if not has_raw and not self._sign(tx_id):
                return
            self._sender.ready(address, nonce, tx_id)
        except Exception:
            log.exception("withdrawal %s: unexpected failure; it stays where it is and is retried", tx_id)
        finally:
            with self._inflight_lock:
                self._inflight.discard(tx_id)

    def _prepare(self, tx_id: str) -> tuple[str, int, bool] | None:
        """Give an approved withdrawal its nonce and unsigned transaction, in one commit."""
        c = self.custody
        with c._read() as s:
            tx = s.get(m.Transaction, tx_id)
            if tx is None or tx.state not in (states.APPROVED, states.SIGNING):
                return None
            if tx.state == states.SIGNING:
                source = s.get(m.Address, tx.source_address_id)
                assert source is not None and tx.nonce is not None
                return source.address, tx.nonce, tx.raw is not None
            asset = s.get(m.Asset, tx.asset_id)
            source = s.get(m.Address, tx.source_address_id)
            assert asset is not None and source is not None and tx.destination is not None and tx.amount is not None
            sender_address, kind, contract = source.address, asset.kind, asset.contract
            destination, amount = tx.destination, tx.amount
        max_fee, priority = c.chain.fees()
        funds = c.funds(sender_address, contract if kind != "native" else None, max_fee)  # before the write lock
        if kind == "native":
            to, value, data, gas = parse_address(destination), amount, b"", ETH_TRANSFER_GAS
        else:
            assert contract is not None
            to, value = parse_address(contract), 0
            data = erc20_transfer_data(parse_address(destination), amount)
            gas = max(TOKEN_GAS_FLOOR, c.chain.estimate_gas(sender_address, contract, 0, data) * 5 // 4)
        try:
            return self._assign(tx_id, max_fee, priority, gas, to, value, data, funds)
        except _Unfunded as exc:
            # Fees rose past what was reserved at submission: wait (an admin can still cancel), never take a nonce.
            with c._tx() as s:
                tx = s.get(m.Transaction, tx_id)
                assert tx is not None
                tx.error = f"waiting for funds at today's fees: {exc}"
            return None

    def _assign(
        self, tx_id: str, max_fee: int, priority: int, gas: int, to: bytes, value: int, data: bytes, funds: Funds
    ) -> tuple[str, int, bool] | None:
        c = self.custody

        def work(s: Session) -> tuple[str, int, bool] | None:
            tx = s.get(m.Transaction, tx_id, with_for_update=True)
            assert tx is not None
            if tx.state != states.APPROVED:
                return None  # cancelled meanwhile, or another worker got here first
            source = s.get(m.Address, tx.source_address_id, with_for_update=True)
            asset = s.get(m.Asset, tx.asset_id)
            assert source is not None and asset is not None
            nonce = source.next_nonce
            source.next_nonce = nonce + 1
            unsigned = Eip1559Transaction(
                chain_id=c.chain.chain_id,
                nonce=nonce,
                max_priority_fee_per_gas=priority,
                max_fee_per_gas=max_fee,
                gas_limit=gas,
                to=to,
                value=value,
                data=data,
            )
            tx.nonce = nonce
            tx.unsigned = unsigned.to_json()
            tx.digest = unsigned.signing_hash().hex()
            with s.no_autoflush:  # the check excludes this row: no need to write it out first
                shortfall = c._shortfall(s, source, asset, tx, funds)  # with this transaction's real fee cap
            if shortfall is not None:
                raise _Unfunded(shortfall)  # rolls the nonce back
            tx.error = None
            c._move(s, None, tx, states.SIGNING, nonce=nonce, digest=tx.digest, unsigned=tx.unsigned)
            return source.address, nonce, False

        return c._write(work)

    def _evidence(self, tx_id: str) -> tuple[str, str, bytes, bytes]:
        """key id, path, digest, and the evidence the nodes re-check: the approvals and the quorum they meet."""
        c = self.custody
        with c._read() as s:
            tx = s.get(m.Transaction, tx_id)
            assert tx is not None and tx.unsigned is not None and tx.digest is not None
            vault = s.get(m.Vault, tx.vault_id)
            source = s.get(m.Address, tx.source_address_id)
            assert vault is not None and source is not None
            requirement = c._requirement(tx) if tx.requirement is not None else None
            eligible = evidence.eligible_users(requirement)
            approvals: list[tuple[str, bytes, bytes]] = []
            if requirement is not None:
                approvals = [
                    (a.approver_id, bytes.fromhex(a.public_key), bytes.fromhex(a.signature))
                    for a in s.scalars(
                        select(m.Approval).where(m.Approval.transaction_id == tx.id, m.Approval.decision == "approve")
                    )
                ]
            keys: dict[str, bytes] = {}
            for user_id, approval_key in s.execute(  # the keys of the initiator and of every eligible approver
                select(m.User.id, m.User.approval_key).where(
                    m.User.org_id == tx.org_id, m.User.id.in_(eligible | {tx.initiator_id})
                )
            ):
                if approval_key is not None:
                    keys[user_id] = bytes.fromhex(approval_key)
            built = evidence.build_evidence(
                org=tx.org_id,
                transaction_id=tx.id,
                intent=c.intent(s, tx),
                transaction=Eip1559Transaction.from_json(tx.unsigned),
                requirement=requirement,
                initiator_id=tx.initiator_id,
                keys=keys,
                approvals=approvals,
            )
            return vault.key_id, source.path, bytes.fromhex(tx.digest), built.encode()

    def _sign(self, tx_id: str) -> bool:
        c = self.custody
        try:
            key_id, path, digest, evidence = self._evidence(tx_id)
        except ValueError as exc:  # e.g. a quorum larger than the nodes accept: it will never be signable
            self._abandon(tx_id, f"cannot build the approval evidence for the signer nodes: {exc}")
            return False
        error = ""
        for attempt in range(SIGN_ATTEMPTS):
            try:
                signature = c.signer.sign(key_id, path, digest, evidence=evidence)
                break
            except ClusterError as exc:
                if exc.reason in PERMANENT:  # the nodes refuse on their own checks: retrying cannot help
                    self._abandon(tx_id, f"the signer nodes refused: {exc}")
                    return False
                error = f"{exc.reason}: {exc}"
            except Exception as exc:  # a node down or a session aborted: another subset may sign
                error = f"{type(exc).__name__}: {exc}"
            log.warning("withdrawal %s: signing attempt %d failed: %s", tx_id, attempt + 1, error)
            time.sleep(RETRY_DELAY * (attempt + 1))
        else:
            with c._tx() as s:
                tx = s.get(m.Transaction, tx_id)
                assert tx is not None
                tx.error, tx.attempts = f"signing failed, will retry: {error}", tx.attempts + 1
                c._event(s, None, "transaction.signing_failed", tx.id, org_id=tx.org_id, error=error)
            return False

        def record(s: Session) -> bool:
            tx = s.get(m.Transaction, tx_id, with_for_update=True)
            assert tx is not None and tx.unsigned is not None
            if tx.state != states.SIGNING or tx.raw is not None or tx.digest != digest.hex():
                return False  # abandoned (or finished) meanwhile: this signature is never used
            unsigned = Eip1559Transaction.from_json(tx.unsigned)
            raw = unsigned.signed(signature.y_parity, signature.r, signature.s)
            tx.raw = raw.hex()
            tx.tx_hash = "0x" + transaction_hash(raw).hex()
            tx.signers = list(signature.signers)
            tx.error = None
            c._event(s, None, "transaction.signed", tx.id, org_id=tx.org_id, tx_hash=tx.tx_hash, signers=tx.signers)
            return True

        return c._write(record)

    def _abandon(self, tx_id: str, error: str) -> None:
        """Fail a withdrawal the nodes will not sign, and release its nonce.

        Nothing from its address with a later nonce can have been sent (sending
        stops at the gap), so those withdrawals fail too, with their nonces, and the
        address's counter goes back: nonces stay contiguous and no later withdrawal
        waits forever behind one that can never be signed. The later ones must be
        submitted again (a node pins each transaction id to its first nonce).
        """
        c = self.custody
        with c._read() as s:
            row = s.get(m.Transaction, tx_id)
            source_row = s.get(m.Address, row.source_address_id) if row is not None else None
            if source_row is None:
                return
            address = source_row.address
        # Under the sender's lock for the address: no send can slip in between the commit and the rewind.
        with self._sender.address_lock(address):
            self._abandon_locked(tx_id, error)

    def _abandon_locked(self, tx_id: str, error: str) -> None:
        c = self.custody
        released: tuple[str, int] | None = None
        with c._tx() as s:
            tx = s.get(m.Transaction, tx_id, with_for_update=True)
            assert tx is not None
            if tx.state != states.SIGNING or tx.raw is not None or tx.nonce is None:
                return
            source = s.get(m.Address, tx.source_address_id, with_for_update=True)
            assert source is not None
            later = list(
                s.scalars(
                    select(m.Transaction)
                    .where(
                        m.Transaction.source_address_id == source.id,
                        m.Transaction.state == states.SIGNING,
                        m.Transaction.nonce > tx.nonce,
                    )
                    .order_by(m.Transaction.nonce)
                )
            )
            first = tx.nonce
            for victim, reason in [(tx, error)] + [
                (t, f"an earlier withdrawal from this address (nonce {first}) was refused; submit again") for t in later
            ]:
                nonce, victim.nonce, victim.error = victim.nonce, None, reason
                c._move(s, None, victim, states.FAILED, reason=reason, released_nonce=nonce)
            source.next_nonce = first
            released = (source.address, first)
        if released is not None:
            self._sender.rewind_locked(*released)

    def _broadcast(self, address: str, run: list[tuple[int, str]]) -> list[str]:
        """Send a run of consecutive transactions from ``address`` in nonce order, then commit them as broadcast.

        The signed bytes were committed before this (``signing`` with ``raw``), so a crash
        between a send and the commit only means the same bytes are sent again after the
        restart, which the node answers with the same hash.
        """
        c = self.custody
        with c._read() as s:
            rows = {
                r.id: (r.nonce, r.state, r.raw)
                for r in s.execute(
                    select(m.Transaction.id, m.Transaction.nonce, m.Transaction.state, m.Transaction.raw).where(
                        m.Transaction.id.in_([tx_id for _, tx_id in run])
                    )
                )
            }
        outcomes: list[str] = []
        sent: list[tuple[int, str]] = []
        for nonce, tx_id in run:
            tx_nonce, state, raw = rows.get(tx_id, (None, None, None))
            if tx_nonce != nonce:  # gone, or its nonce was released
                outcomes.append(OBSOLETE)
                break
            if state in (states.BROADCAST, states.CONFIRMED):
                outcomes.append(SENT)
                continue
            if state != states.SIGNING or raw is None:
                outcomes.append(OBSOLETE)
                break
            try:
                c.chain.send_raw(bytes.fromhex(raw))
            except ChainError as exc:
                log.warning("withdrawal %s (nonce %d): send failed: %s", tx_id, nonce, exc)
                with c._tx() as s:
                    tx = s.get(m.Transaction, tx_id)
                    assert tx is not None
                    tx.error = f"broadcast failed, will retry: {exc}"
                outcomes.append(RETRY)
                break
            sent.append((nonce, tx_id))
            outcomes.append(SENT)
        if sent:

            def record(s: Session) -> None:
                now = c.clock()
                for nonce, tx_id in sent:
                    tx = s.get(m.Transaction, tx_id, with_for_update=True)
                    assert tx is not None
                    if tx.state == states.SIGNING:
                        tx.broadcast_at = now
                        tx.error = None
                        c._move(s, None, tx, states.BROADCAST, tx_hash=tx.tx_hash, nonce=nonce)

            c._write(record)
        return outcomes

    # -- background loops -------------------------------------------------------------------------------

    def _loop(self, interval: float, step: Callable[[], Any], name: str) -> None:
        while not self._stop.is_set():
            try:
                step()
            except Exception:
                log.exception("%s: step failed; retrying", name)
            self._stop.wait(interval)

    def _confirm_loop(self) -> None:
        self._loop(self.poll, self.confirm_once, "confirmations")

    def _deposit_loop(self) -> None:
        self._loop(self.deposit_poll, self.scan_deposits_once, "deposits")

    def _sweep_loop(self) -> None:
        self._loop(2.0, self.sweep_once, "sweep")

    def sweep_once(self) -> None:
        """Retry what is stuck: signing that failed, broadcasts refused, in nonce order."""
        with self.custody._read() as s:
            ids = list(
                s.scalars(
                    select(m.Transaction.id)
                    .where(
                        m.Transaction.kind == "withdrawal", m.Transaction.state.in_([states.APPROVED, states.SIGNING])
                    )
                    .order_by(m.Transaction.nonce)
                )
            )
        for tx_id in ids:
            self.submit(tx_id)

    def confirm_once(self) -> int:
        """Move broadcast withdrawals whose receipt is deep enough to confirmed (or failed if reverted).

        Receipts are not polled one by one on every pass (with hundreds in flight that is
        thousands of calls a second): each new block's transaction list is read once, and
        a receipt is fetched only for our transactions found in it. The first pass after a
        start, which cannot know what was mined while the service was down, asks for the
        receipt of every broadcast withdrawal.
        """
        c = self.custody
        head = c.chain.block_number()
        with c._read() as s:
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
        if self._confirm_cursor is None:
            candidates = set(pending)
        else:
            candidates = set()
            for number in range(self._confirm_cursor + 1, head + 1):
                found = {"0x" + h.hex() for h in c.chain.block_transaction_hashes(number)}
                candidates |= found & set(pending)
        self._confirm_cursor = head
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
            receipt = c.chain.receipt(bytes.fromhex(tx_hash[2:]))
            if receipt is not None:
                self._mined[tx_hash] = receipt
        deep: list[tuple[str, str, Receipt]] = []
        for tx_hash, receipt in list(self._mined.items()):
            if head - receipt.block_number + 1 < c.settings.confirmations:
                continue
            if c.settings.confirmations > 1:  # deep enough by the cached receipt: make sure it is still there
                fresh = c.chain.receipt(bytes.fromhex(tx_hash[2:]))
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
        c = self.custody

        def record(s: Session) -> None:
            for tx_id, receipt in mined:
                tx = s.get(m.Transaction, tx_id, with_for_update=True)
                assert tx is not None
                if tx.state != states.BROADCAST:
                    continue
                tx.block_number, tx.gas_used = receipt.block_number, receipt.gas_used
                tx.fee = receipt.gas_used * receipt.effective_gas_price
                if receipt.status == 1:
                    c._move(s, None, tx, states.CONFIRMED, block=receipt.block_number, gas_used=receipt.gas_used)
                else:
                    tx.error = "the transaction reverted on chain"
                    c._move(s, None, tx, states.FAILED, block=receipt.block_number, reason="reverted")

        c._write(record)

    def scan_deposits_once(self) -> int:
        """Record ETH and ERC-20 transfers to vault addresses, once each, and confirm them at depth."""
        c = self.custody
        head = c.chain.block_number()
        with c._read() as s:
            cursor = s.get(m.ChainCursor, "deposits")
            first = 0 if cursor is None else cursor.block + 1
            watched = {a.address: a for a in s.scalars(select(m.Address))}
            vaults = {v.id: v for v in s.scalars(select(m.Vault))}
            assets = list(s.scalars(select(m.Asset)))
            s.expunge_all()
        found = 0
        if first <= head:
            last = min(head, first + 500)
            tokens = {a.contract for a in assets if a.contract is not None}
            transfers = c.chain.scan(first, last, set(watched), tokens) if watched else []
            with c._tx() as s:
                for t in transfers:
                    address = watched.get(t.recipient)
                    if address is None:
                        continue
                    org_id = vaults[address.vault_id].org_id
                    asset = next(
                        (
                            a
                            for a in assets
                            if a.org_id == org_id and (a.kind == "native" if t.kind == "eth" else a.contract == t.token)
                        ),
                        None,
                    )
                    if asset is None:
                        continue
                    tx_hash = "0x" + t.tx_hash.hex()
                    exists = s.scalar(
                        select(m.Deposit.id).where(
                            m.Deposit.tx_hash == tx_hash,
                            m.Deposit.log_index == t.log_index,
                            m.Deposit.address_id == address.id,
                        )
                    )
                    if exists is not None:
                        continue
                    deposit = m.Deposit(
                        org_id=org_id,
                        vault_id=address.vault_id,
                        address_id=address.id,
                        asset_id=asset.id,
                        tx_hash=tx_hash,
                        log_index=t.log_index,
                        block_number=t.block_number,
                        sender=t.sender,
                        amount=t.amount,
                        state="pending",
                    )
                    s.add(deposit)
                    s.flush()
                    c._event(
                        s,
                        None,
                        "deposit.detected",
                        deposit.id,
                        org_id=org_id,
                        vault_id=address.vault_id,
                        address=address.address,
                        asset=asset.symbol,
                        amount=str(t.amount),
                        tx_hash=tx_hash,
                        log_index=t.log_index,
                        block=t.block_number,
                    )
                    found += 1
                row = s.get(m.ChainCursor, "deposits")
                if row is None:
                    s.add(m.ChainCursor(name="deposits", block=last))
                else:
                    row.block = last
        with c._tx() as s:
            depth_block = head - c.settings.confirmations + 1
            for deposit in s.scalars(
                select(m.Deposit).where(m.Deposit.state == "pending", m.Deposit.block_number <= depth_block)
            ):
                deposit.state = "confirmed"
                c._event(s, None, "deposit.confirmed", deposit.id, org_id=deposit.org_id, block=deposit.block_number)
        return found

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Block until no withdrawal is between approved and broadcast (tests, demo)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.custody._read() as s:
                busy = s.scalar(
                    select(m.Transaction.id).where(m.Transaction.state.in_([states.APPROVED, states.SIGNING])).limit(1)
                )
            if busy is None:
                return
            time.sleep(0.05)
        raise TimeoutError("withdrawals are still in flight")
