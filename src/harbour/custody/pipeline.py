"""From ``approved`` to ``confirmed``: nonces, MPC signing, ordered broadcast; and the loops that drive it.

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
gap, and the embedded chain does), by :class:`harbour.custody.sender.OrderedSender`,
which reads what is next from the database, not from this process's memory.

Several processes may run this pipeline on one PostgreSQL database: a withdrawal
is signed only under its signing lease, and an address's transactions are sent
only under its database-wide lock (:mod:`harbour.custody.claims` says why that
signs each withdrawal once and sends each nonce in order).

Sending is :mod:`harbour.custody.broadcast`. What a withdrawal's transaction is
(its body, its intent) comes from its transaction kind
(:mod:`harbour.custody.kinds`); receipts are followed in
:mod:`harbour.custody.receipts` and deposits found in :mod:`harbour.custody.deposits`,
each driven by a loop here.

Every log line about one withdrawal carries its ``transaction_id``
(:func:`harbour.util.logs.bound`), and each signing attempt's time goes to the
process's metrics (:mod:`harbour.custody.metrics`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from harbour.chains.eip1559 import Eip1559Transaction, transaction_hash
from harbour.custody import (
    broadcast,
    claims,
    fees,
    kinds,
    outages,
    outcomes,
    rebroadcast,
    replacement,
    signing,
    states,
    transactions,
)
from harbour.custody import funds as fund
from harbour.custody import models as m
from harbour.custody.assets import AssetRef
from harbour.custody.metrics import ServiceMetrics
from harbour.custody.receipts import Confirmations
from harbour.custody.sender import OrderedSender
from harbour.custody.service import Custody
from harbour.node.coordinator import ClusterError
from harbour.util import logs

log = logging.getLogger(__name__)

SIGN_ATTEMPTS = 3
RETRY_DELAY = 0.5


class _Unfunded(Exception):
    """The source cannot pay a withdrawal at the fee it would be built with."""


class Pipeline:
    def __init__(
        self,
        custody: Custody,
        *,
        workers: int = 16,
        poll: float = 0.1,
        deposit_poll: float = 0.5,
        rebroadcast_after: float = rebroadcast.AFTER,
        lease: float = claims.DEFAULT_LEASE,
        retry: float = 2.0,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.custody = custody
        self.metrics = metrics if metrics is not None else ServiceMetrics()
        self.metrics.watch(custody.uow, custody.chain, self.depths)
        self.lease = lease
        self.retry_interval = retry
        """Seconds between passes that pick up what is stuck (:meth:`sweep_once`)."""
        self.holder = claims.process_name()
        """What this process's signing leases name (:mod:`harbour.custody.claims`)."""
        self.poll = poll
        self.deposit_poll = deposit_poll
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="harbour-sign")
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.uow = custody.uow
        self._engine = custody.uow.sessions.kw["bind"]
        self._sender = OrderedSender(
            lambda address, run: broadcast.send_run(self.uow, custody.chain, address, run),
            lambda address: broadcast.waiting(self.uow, address),
            lambda a: claims.exclusive(self._engine, claims.address(a)),
        )
        self._inflight: set[str] = set()
        self._inflight_lock = threading.Lock()
        self._confirmations = Confirmations(custody.uow, custody.chain, custody.settings)
        self._rebroadcast = rebroadcast.Rebroadcast(custody.uow, custody.chain, after=rebroadcast_after)
        self._last_sweep = time.monotonic()
        custody.on_approved = self.submit
        custody.on_landed = self.publish

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        self.recover()
        for target, name in (
            (self._confirm_loop, "confirm"),
            (self._deposit_loop, "deposits"),
            (self._sweep_loop, "sweep"),
            (lambda: self.custody.dispatcher.run(self._stop), "webhooks"),  # harbour.custody.dispatch
            (self._lease_loop, "leases"),
        ):
            thread = threading.Thread(target=target, name=f"harbour-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self.custody.dispatcher.wake()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for thread in self._threads:
            thread.join(timeout=10)

    def recover(self) -> None:
        """Pick up every withdrawal a previous run left between ``approved`` and ``broadcast``.

        On SQLite this is the only service process (:func:`claims.single_process`), so
        the signing leases a previous run left are its own and are ended at once; on
        PostgreSQL another process may hold them, and they are taken once they expire.
        """
        if self._engine.dialect.name == "sqlite":
            self.uow.write(lambda s: claims.release_all_but(s, self.holder))
        self._resubmit_unfinished()

    def _resubmit_unfinished(self) -> None:
        """Submit every withdrawal between ``approved`` and ``broadcast`` again, in nonce order.

        ``submit`` skips those already in flight, so this is safe while workers run. Those
        another process holds an unexpired signing lease of are left to it.
        """
        held = claims.SigningClaim
        with self.uow.read() as s:
            ids = list(
                s.scalars(
                    select(m.Transaction.id)
                    .outerjoin(held, held.transaction_id == m.Transaction.id)
                    .where(
                        m.Transaction.kind == "withdrawal",
                        m.Transaction.state.in_([states.APPROVED, states.SIGNING]),
                        or_(
                            held.holder.is_(None),
                            held.holder == self.holder,
                            held.until < self.uow.clock(),
                            m.Transaction.raw.is_not(None),
                        ),
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

    def depths(self) -> dict[str, int]:
        """This process's queues: withdrawals waiting for a worker, and those being worked on."""
        with self._inflight_lock:
            in_flight = len(self._inflight)
        waiting = self._pool._work_queue.qsize()  # the executor's own queue: the only count of what waits for a worker
        return {"submitted": waiting, "in_flight": in_flight}

    def publish(self, org_id: str) -> None:
        """Push the organisation's log to every signer node, in the background, after an entry landed.

        Best effort: signing pushes what its signers lack anyway. Publishing at once
        means a node holds an entry (an approver's removal, a tighter policy) before
        any withdrawal needs it, and its operator sees the head the admins signed.
        """
        with contextlib.suppress(RuntimeError):  # shutting down: signing pushes it when it next needs it
            self._pool.submit(self._publish, org_id)

    def _publish(self, org_id: str) -> None:
        if not self.custody.signer.nodes:
            return
        try:
            self.custody.signer.push(self.custody.governance_log(org_id))
        except Exception as exc:
            log.warning("organisation %s: pushing its governance log to the signer nodes failed: %s", org_id, exc)

    # -- one withdrawal ---------------------------------------------------------------------------------

    def _process(self, tx_id: str) -> None:
        with logs.bound(transaction_id=tx_id):
            self._process_bound(tx_id)

    def _process_bound(self, tx_id: str) -> None:
        try:
            prepared = self._prepare(tx_id)
            if prepared is None:
                return
            address, _nonce, has_raw = prepared
            if not has_raw and not self._sign(tx_id):
                return
            self._sender.drain(address)
        except Exception:
            log.exception("withdrawal %s: unexpected failure; it stays where it is and is retried", tx_id)
        finally:
            with self._inflight_lock:
                self._inflight.discard(tx_id)

    def _prepare(self, tx_id: str) -> tuple[str, int, bool] | None:
        """Give an approved withdrawal its nonce and unsigned transaction, in one commit."""
        c = self.custody
        with self.uow.read() as s:
            tx = s.get(m.Transaction, tx_id)
            if tx is None or tx.state not in (states.APPROVED, states.SIGNING):
                return None
            if tx.state == states.SIGNING:
                source = s.get(m.Address, tx.source_address_id)
                assert source is not None and tx.nonce is not None
                return source.address, tx.nonce, tx.raw is not None
            kind, order = kinds.of(tx.kind), transactions.order(s, tx)
            explicit = (
                fees.Caps(tx.max_fee_per_gas, tx.max_priority_fee_per_gas)
                if tx.max_fee_per_gas is not None and tx.max_priority_fee_per_gas is not None
                else None
            )
            level, approved_fee = tx.fee_level, tx.max_fee
        try:
            body = fees.body(kind, order, c.chain)
        except fees.EstimateReverted as exc:  # the chain says it would revert: waiting will not change that
            self._fail_unbuilt(tx_id, outcomes.ESTIMATE_REVERTED, f"the gas estimate failed: {exc}")
            return None
        try:
            caps = fees.for_row(c.chain, level=level, explicit=explicit, max_fee=approved_fee, gas_limit=body.gas_limit)
        except fees.AboveMaximum as exc:
            self._fail_unbuilt(tx_id, outcomes.ABOVE_MAX_FEE, str(exc))
            return None
        except fees.FeesTooHigh as exc:  # the sweep tries again; an admin can still cancel
            with self.uow.tx() as s:
                tx = s.get(m.Transaction, tx_id)
                assert tx is not None
                outcomes.record(tx, outcomes.WAITING_FOR_FEES, f"waiting for fees to fall: {exc}")
            return None
        max_fee, priority = caps.max_fee_per_gas, caps.max_priority_fee_per_gas
        funds = fund.read(c.chain, order.sender, order.asset, max_fee)  # before the write lock
        try:
            return self._assign(tx_id, max_fee, priority, body, funds)
        except _Unfunded as exc:
            # The source cannot pay it now on top of what is in flight: wait (an admin can still cancel), no nonce.
            with self.uow.tx() as s:
                tx = s.get(m.Transaction, tx_id)
                assert tx is not None
                outcomes.record(tx, outcomes.WAITING_FOR_FUNDS, f"waiting for funds at today's fees: {exc}")
            return None

    def _assign(
        self, tx_id: str, max_fee: int, priority: int, body: kinds.Body, funds: fund.Funds
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
            if tx.replaces_id is not None:  # a speed-up or cancel: the stuck transaction's nonce, or nothing
                slot = replacement.nonce_of(s, tx)
                if slot is None:
                    self.uow.move(s, None, tx, states.FAILED, reason=tx.error)
                    return None
                nonce = slot
            else:
                nonce = source.next_nonce
                source.next_nonce = nonce + 1
            unsigned = Eip1559Transaction(
                chain_id=c.chain.chain_id,
                nonce=nonce,
                max_priority_fee_per_gas=priority,
                max_fee_per_gas=max_fee,
                gas_limit=body.gas_limit,
                to=body.to,
                value=body.value,
                data=body.data,
            )
            tx.nonce = nonce
            tx.unsigned = unsigned.to_json()
            tx.digest = unsigned.signing_hash().hex()
            with s.no_autoflush:  # the check excludes this row: no need to write it out first
                # with this transaction's real fee cap
                shortfall = fund.shortfall(
                    s, source, AssetRef.of(asset), tx, funds, c.settings.gas_headroom, also=tx.replaces_id
                )
            if shortfall is not None:
                raise _Unfunded(shortfall)  # rolls the nonce back
            outcomes.clear(tx)
            self.uow.move(s, None, tx, states.SIGNING, nonce=nonce, digest=tx.digest, unsigned=tx.unsigned)
            claims.take(s, tx_id, self.holder, self.uow.clock(), self.lease)  # whoever gives the nonce signs first
            return source.address, nonce, False

        return self.uow.write(work)

    def _claim(self, tx_id: str) -> bool:
        """Take or renew this process's signing lease of a withdrawal still to sign; False if it is not ours to sign."""

        def work(s: Session) -> bool:
            tx = s.get(m.Transaction, tx_id)
            if tx is None or tx.state != states.SIGNING or tx.raw is not None:
                return False
            taken = claims.take(s, tx_id, self.holder, self.uow.clock(), self.lease)
            if taken is not None and taken.previous is not None:
                log.warning("withdrawal %s: taking over signing from %s, whose lease expired", tx_id, taken.previous)
            return taken is not None

        return self.uow.write(work)

    def _sign(self, tx_id: str) -> bool:
        """Have the nodes sign the withdrawal (:mod:`harbour.custody.signing`); fail it if they never will.

        Only under this process's signing lease, renewed before each attempt: while
        another process holds it, that process signs (:mod:`harbour.custody.claims`).
        """
        c = self.custody
        error = ""
        for attempt in range(SIGN_ATTEMPTS):
            if not self._claim(tx_id):
                log.debug("withdrawal %s: another process signs it, or it needs no signature now", tx_id)
                return False
            try:
                # Each attempt reads the log again: an entry that landed meanwhile is pushed and cited.
                request = signing.prepare(c, tx_id)
                started = time.monotonic()
                try:
                    signature = c.signer.sign(
                        request.key_id, request.path, request.digest, evidence=request.evidence, log=request.log
                    )
                except BaseException as exc:
                    refused = isinstance(exc, ClusterError) and signing.refusal(exc) is not None
                    self.metrics.signing.labels("refused" if refused else "failed").observe(time.monotonic() - started)
                    raise
                self.metrics.signing.labels("signed").observe(time.monotonic() - started)
                log.info("withdrawal %s: signed by nodes %s", tx_id, list(signature.signers))
                break
            except signing.Unsignable as exc:
                self._abandon(tx_id, outcomes.UNSIGNABLE, str(exc))
                return False
            except ClusterError as exc:
                final = signing.refusal(exc)
                if final is not None:  # the nodes judged it and said no: retrying cannot help
                    self._abandon(tx_id, outcomes.NODE_REFUSED, final)
                    return False
                error = f"{exc.reason}: {exc}"
            except Exception as exc:  # a node down or a session aborted: another subset may sign
                error = f"{type(exc).__name__}: {exc}"
            log.warning("withdrawal %s: signing attempt %d failed: %s", tx_id, attempt + 1, error)
            time.sleep(RETRY_DELAY * (attempt + 1))
        else:
            self._signing_failed(tx_id, error)
            return False
        digest = request.digest

        def record(s: Session) -> bool:
            tx = s.get(m.Transaction, tx_id, with_for_update=True)
            assert tx is not None and tx.unsigned is not None
            claims.release(s, tx_id)
            if tx.state != states.SIGNING or tx.raw is not None or tx.digest != digest.hex():
                # Abandoned, or signed by a process that took over an expired lease and committed first:
                # this signature is of the same unsigned transaction and is never sent (first commit wins).
                return False
            unsigned = Eip1559Transaction.from_json(tx.unsigned)
            raw = unsigned.signed(signature.y_parity, signature.r, signature.s)
            tx.raw = raw.hex()
            tx.tx_hash = "0x" + transaction_hash(raw).hex()
            tx.signers = list(signature.signers)
            outcomes.clear(tx)
            self.uow.event(
                s, None, "transaction.signed", tx.id, org_id=tx.org_id, tx_hash=tx.tx_hash, signers=tx.signers
            )
            return True

        return self.uow.write(record)

    def _signing_failed(self, tx_id: str, error: str) -> None:
        """Every attempt failed: say so, and give up the lease, so that any process's sweeper tries next."""

        def work(s: Session) -> None:
            tx = s.get(m.Transaction, tx_id)
            assert tx is not None
            outcomes.record(tx, outcomes.SIGNING_RETRY, f"signing failed, will retry: {error}")
            tx.attempts += 1
            self.uow.event(s, None, "transaction.signing_failed", tx.id, org_id=tx.org_id, error=error)
            claims.release(s, tx_id, self.holder)

        self.uow.write(work)

    def _abandon(self, tx_id: str, code: str, error: str) -> None:
        """Fail a withdrawal the nodes will not sign, and release its nonce.

        Nothing from its address with a later nonce can have been sent (sending
        stops at the gap), so those withdrawals fail too, with their nonces, and the
        address's counter goes back: nonces stay contiguous and no later withdrawal
        waits forever behind one that can never be signed. The later ones must be
        submitted again (a node pins each transaction id to its first nonce).
        """
        with self.uow.read() as s:
            row = s.get(m.Transaction, tx_id)
            source_row = s.get(m.Address, row.source_address_id) if row is not None else None
            if source_row is None:
                return
            address = source_row.address
        # Under the address's locks (this process's, then the database's): no send from it runs meanwhile.
        with self._sender.address_lock(address), self._sender.exclusive(address):
            self.uow.write(lambda s: self._abandon_locked(s, tx_id, code, error))

    def _abandon_locked(self, s: Session, tx_id: str, code: str, error: str) -> None:
        tx = s.get(m.Transaction, tx_id, with_for_update=True)
        assert tx is not None
        if tx.state != states.SIGNING or tx.raw is not None or tx.nonce is None:
            return
        if tx.replaces_id is not None:  # its nonce is the stuck transaction's, which stays as it is
            outcomes.record(tx, code, error)
            self.uow.move(s, None, tx, states.FAILED, reason=error)
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
        later_reason = f"an earlier withdrawal from this address (nonce {first}) was refused; submit again"
        for victim, why, reason in [(tx, code, error)] + [
            (t, outcomes.EARLIER_NONCE_FAILED, later_reason) for t in later
        ]:
            nonce, victim.nonce = victim.nonce, None
            outcomes.record(victim, why, reason)
            self.uow.move(s, None, victim, states.FAILED, reason=reason, released_nonce=nonce)
            claims.release(s, victim.id)
        source.next_nonce = first

    def _fail_unbuilt(self, tx_id: str, code: str, error: str) -> None:
        """Fail an approved withdrawal that cannot be built as it stands (its gas), before it takes a nonce."""
        with self.uow.tx() as s:
            tx = s.get(m.Transaction, tx_id, with_for_update=True)
            assert tx is not None
            if tx.state != states.APPROVED:
                return
            outcomes.record(tx, code, error)
            self.uow.move(s, None, tx, states.FAILED, reason=error)

    # -- background loops -------------------------------------------------------------------------------

    def _loop(self, interval: float, step: Callable[[], Any], name: str) -> None:
        while not self._stop.is_set():
            try:
                step()
            except Exception as exc:
                if (dependency := outages.dependency_of(exc)) is not None:  # an outage: one line, no traceback
                    log.error("%s: %s unavailable; retrying: %s", name, dependency, outages.first_line(exc))
                else:
                    log.exception("%s: step failed; retrying", name)
            self._stop.wait(interval)

    def _confirm_loop(self) -> None:
        self._loop(self.poll, self.confirm_once, "confirmations")

    def _deposit_loop(self) -> None:
        self._loop(self.deposit_poll, self.scan_deposits_once, "deposits")

    def _sweep_loop(self) -> None:
        self._loop(self.retry_interval, self.sweep_once, "sweep")

    def _lease_loop(self) -> None:
        self._loop(self.lease / 3, self.renew_leases, "leases")

    def renew_leases(self) -> int:
        """Extend this process's signing leases of the withdrawals it is working on (:func:`claims.renew`)."""
        with self._inflight_lock:
            working = set(self._inflight)
        return self.uow.write(lambda s: claims.renew(s, working, self.holder, self.uow.clock(), self.lease))

    def confirm_once(self) -> int:
        """One pass of the confirmation loop (:meth:`harbour.custody.receipts.Confirmations.once`)."""
        return self._confirmations.once()

    def scan_deposits_once(self) -> int:
        """One pass of the deposit loop (:meth:`harbour.custody.deposits.Deposits.scan_once`), one process at a time."""
        with claims.exclusive(self._engine, claims.DEPOSITS):
            return self.custody.deposits.scan_once()

    def sweep_once(self) -> None:
        """Retry what is stuck (signing that failed, broadcasts refused, in nonce order); expire old approvals;
        send again what the chain forgot, and settle what another transaction at its nonce replaced.

        Every ``sweep_interval`` seconds, also sweep deposit addresses as the policy sets (custody/sweep.py).
        """
        self._resubmit_unfinished()
        self.custody.expire_approvals()
        self._rebroadcast.once()
        if time.monotonic() - self._last_sweep >= self.custody.settings.sweep_interval:
            self._last_sweep = time.monotonic()
            with claims.exclusive(self._engine, claims.SWEEPS):  # one process at a time proposes sweeps
                self.custody.sweeps.run_once()

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Block until no withdrawal is between approved and broadcast (tests, demo)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.uow.read() as s:
                busy = s.scalar(
                    select(m.Transaction.id).where(m.Transaction.state.in_([states.APPROVED, states.SIGNING])).limit(1)
                )
            if busy is None:
                return
            time.sleep(0.05)
        raise TimeoutError("withdrawals are still in flight")
