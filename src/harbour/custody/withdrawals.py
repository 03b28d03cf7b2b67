"""Withdrawals, from a request to ``approved``: checks, idempotency, the policy's decision, the funds.

A submission is recorded and run through the policy in one commit: it comes out
approved (handed to the pipeline after the commit), pending approval, or
rejected, by a rule or because its source cannot pay it on top of everything in
flight (:mod:`harbour.custody.funds`). The decision is
:func:`harbour.governance.decide.decide` on the state the organisation's
governance log puts in force, with the facts :func:`~harbour.governance.decide.withdrawal_facts`
reads from that state (which vault the key is, which asset, whether the
destination is whitelisted, who the initiator is), exactly as a signer node
will decide it again. The chain is read before the write lock is taken, so no
writer waits on a round trip; the source's row lock makes the check hold. With
an idempotency key, a retried request returns what the first one created.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from harbour.chains.evm import EvmClient
from harbour.custody import fees, inputs, kinds, outcomes, search, sources, states, views
from harbour.custody import funds as fund
from harbour.custody import models as m
from harbour.custody.actors import Actor, require
from harbour.custody.assets import AssetRef
from harbour.custody.errors import Conflict, Invalid, NotFound
from harbour.custody.ledger import Ledger
from harbour.custody.settings import Settings
from harbour.custody.transactions import WITHDRAWAL, Transactions, history
from harbour.custody.uow import UnitOfWork
from harbour.governance import decide
from harbour.governance import policy as pol
from harbour.governance.fields import GovernanceError
from harbour.governance.state import OrgState

KIND: Final = WITHDRAWAL
MAX_CACHED_SOURCES: Final = 10_000


def _not_own(s: Session, vault: m.Vault, to: str) -> None:
    """Conflict if ``to`` is one of ``vault``'s own addresses: a vault paying itself moves nothing."""
    own = s.scalar(select(m.Address.path).where(m.Address.vault_id == vault.id, m.Address.address == to))
    if own is not None:
        raise Conflict(f"{to} is the vault's own address {own}: a withdrawal pays outside the vault")


class Withdrawals:
    def __init__(
        self,
        uow: UnitOfWork,
        chain: EvmClient,
        settings: Settings,
        ledger: Ledger,
        transactions: Transactions,
        on_approved: Callable[[str], None],
    ) -> None:
        self.uow = uow
        self.chain = chain
        self.settings = settings
        self.ledger = ledger
        self.transactions = transactions
        self.on_approved = on_approved
        """Called after commit with the id of a withdrawal that became approved."""
        # (org, vault, asset symbol, named source) -> (candidate source addresses, asset): what a submission
        # reads the chain for before it takes the write lock; checked again under the lock, so a stale entry
        # is refused or read again, never used.
        self._sources: dict[tuple[str, str, str, str | None], tuple[tuple[str, ...], AssetRef]] = {}

    def _decide(
        self, s: Session, actor: Actor, request: decide.Withdrawal, exclude: str | None, also: str | None = None
    ) -> tuple[OrgState, pol.TxFacts, pol.Policy, list[pol.PastTx]]:
        """The state in force, what the policy sees of this withdrawal, the policy and the history it counts.

        ``also`` is left out of the history too: the transaction a replacement replaces (one of them is mined).
        """
        state = self.ledger.state(s, actor.org_id)
        try:
            facts = decide.withdrawal_facts(state, request, self.uow.clock())
        except GovernanceError as exc:
            raise Conflict(f"the governance log in force (entry {state.seq}) cannot describe it: {exc}") from None
        if state.policy is None:
            raise Conflict("the organisation has no policy in force")
        return state, facts, state.policy, history(s, actor.org_id, state.policy, facts.at, exclude=exclude, also=also)

    def _lookup(
        self, s: Session, actor: Actor, vault_id: str, asset_symbol: str, named: str | None = None
    ) -> tuple[m.Vault, m.Asset, list[m.Address]]:
        """The vault, the asset by symbol and the addresses that may pay (:func:`sources.candidates`)."""
        vault = self.uow.get(s, m.Vault, vault_id, actor.org_id, "vault")
        if not isinstance(asset_symbol, str):
            raise Invalid("asset must be a symbol")
        asset = s.scalar(select(m.Asset).where(m.Asset.org_id == actor.org_id, m.Asset.symbol == asset_symbol))
        if asset is None:
            raise NotFound(f"no asset {asset_symbol!r}")
        return vault, asset, sources.candidates(s, vault, named)

    def _quote(self, sender: str, asset: AssetRef, to: str, amount: int, chosen: fees.Choice) -> fees.Quote:
        """The gas and fees of this withdrawal as the chain stands (read before any lock is taken)."""
        order = kinds.Order(self.chain.chain_id, sender, to, asset, amount)
        return fees.quote(kinds.of(KIND), order, self.chain, chosen)

    def quote_gas(self, sender: str, asset: AssetRef, to: str, amount: int) -> int:
        """The gas limit a transaction from ``sender`` paying ``amount`` of ``asset`` to ``to`` is built with now."""
        return self._quote(sender, asset, to, amount, fees.choice()).gas_limit

    def record(
        self,
        s: Session,
        actor: Actor,
        vault: m.Vault,
        asset: m.Asset,
        source: m.Address,
        to: str,
        amount: int,
        note: str,
        funds: fund.Funds,
        priced: tuple[fees.Choice, fees.Quote],
        *,
        replaces: str,
    ) -> dict[str, Any]:
        """Record a replacement of ``replaces`` (custody/replacement.py) as a withdrawal, through the policy."""
        request_hash = hashlib.sha256(json.dumps([replaces, note, to, str(amount)]).encode()).hexdigest()
        return self._record(
            s,
            actor,
            vault,
            asset,
            [source],
            to,
            amount,
            None,
            request_hash,
            note,
            {source.address: funds},
            (None, None),
            priced,
            replaces,
        )

    def estimate(self, actor: Actor, *, vault_id: str, asset: str, to: str, amount: int) -> dict[str, Any]:
        """The gas limit a withdrawal would be submitted with, and each fee level's caps and maximum fee."""
        require(actor, "initiator", "admin", "approver", "auditor")
        to, amount = inputs.address(to, "destination"), inputs.amount(amount)
        with self.uow.read() as s:
            _, asset_row, rows = self._lookup(s, actor, vault_id, asset)
            sender, ref = rows[0].address, AssetRef.of(asset_row)
        quote = self._quote(sender, ref, to, amount, fees.choice())
        return {
            "gas_limit": quote.gas_limit,
            "default_level": fees.DEFAULT_LEVEL,
            "levels": {name: caps.to_json(quote.gas_limit) for name, caps in quote.levels.items()},
        }

    def explain(self, actor: Actor, *, vault_id: str, asset: str, to: str, amount: int) -> dict[str, Any]:
        """Dry-run: what the policy would decide for this withdrawal, and why. Nothing is written."""
        require(actor, "initiator", "admin", "approver", "auditor")
        to, amount = inputs.destination(to), inputs.amount(amount)
        with self.uow.read() as s:
            vault, asset_row, _ = self._lookup(s, actor, vault_id, asset)
            _not_own(s, vault, to)  # every address of the vault: which one would pay is chosen on submission
            request = decide.Withdrawal(vault.key_id, actor.user_id, asset_row.contract, to, amount)
            _, facts, policy, past = self._decide(s, actor, request, None)
            decision = pol.explain(policy, facts, past)
            return {"policy_version": self.ledger.policy_version(s, actor.org_id), **decision.to_json()}

    def submit_withdrawal(
        self,
        actor: Actor,
        *,
        vault_id: str,
        asset: str,
        to: str,
        amount: int,
        idempotency_key: str | None = None,
        note: str | None = None,
        request_id: str | None = None,
        signature: str | None = None,
        source_address: str | None = None,
        sweep: bool = False,
        external_id: str | None = None,
        fee_level: str | None = None,
        max_fee_per_gas: int | str | None = None,
        max_priority_fee_per_gas: int | str | None = None,
    ) -> dict[str, Any]:
        """Record a withdrawal and run it through the policy: approved, pending approval or rejected.

        With an idempotency key, a retried request returns the transaction the
        first one created; the same key with a different request is a conflict.
        ``request_id`` and ``signature`` are the transaction id the initiator chose
        and their signature over the request (:mod:`harbour.governance.request`),
        which the nodes verify too; a policy that depends on who initiates needs them.
        ``external_id`` is the client's own reference, unique in the organisation.
        ``source_address`` (an address of the vault, or its id) is the address that
        pays; without it one that can pay is chosen (:mod:`harbour.custody.sources`).
        ``sweep`` marks a sweep (:mod:`harbour.custody.sweep`), which goes through
        everything a withdrawal does. ``fee_level`` or both caps choose its fees
        (:mod:`harbour.custody.fees`); its maximum fee is fixed here, with its gas estimated now.
        """
        require(actor, "initiator")
        named = sources.spec(source_address)
        to, amount = inputs.destination(to), inputs.amount(amount)
        inputs.idempotency_key(idempotency_key)
        note = inputs.note(note)
        request_id = inputs.request_id(request_id)
        chosen = fees.choice(fee_level, max_fee_per_gas, max_priority_fee_per_gas)
        signed = inputs.signature(signature, "signature")
        if signed is not None and request_id is None:
            raise Invalid("a signed request names its transaction id (id): the signature is over it")
        external_id = search.external_id(external_id)
        fields: list[Any] = [vault_id, asset, to, str(amount), note, request_id, signature]
        if named is not None or sweep:
            fields += [named, sweep]
        if chosen != fees.choice():
            fields += [chosen.level, chosen.max_fee_per_gas, chosen.max_priority_fee_per_gas]
        request = json.dumps(fields + ([external_id] if external_id is not None else []), sort_keys=True)
        request_hash = hashlib.sha256(request.encode()).hexdigest()
        if idempotency_key is not None:
            found = self.transactions.idempotent(actor, idempotency_key, request_hash)
            if found is not None:
                return found
        try:
            return self._submit(
                actor,
                vault_id,
                asset,
                to,
                amount,
                idempotency_key,
                request_hash,
                note,
                (request_id, signed),
                named,
                sweep,
                chosen,
                external_id,
            )
        except IntegrityError:
            if external_id is not None and idempotency_key is None:  # a race on the unique (org, external_id)
                raise Conflict(f"external_id {external_id!r} names another transaction (or was just used)") from None
            if request_id is not None and idempotency_key is None:
                raise Conflict(f"a transaction {request_id} exists: a request id is used once") from None
            if idempotency_key is None:
                raise
            found = self.transactions.idempotent(actor, idempotency_key, request_hash)
            if found is None and external_id is not None:
                raise Conflict(f"external_id {external_id!r} names another transaction (or was just used)") from None
            if found is None:
                raise
            return found

    def _submit(
        self,
        actor: Actor,
        vault_id: str,
        asset_symbol: str,
        to: str,
        amount: int,
        key: str | None,
        request_hash: str,
        note: str | None,
        signed: tuple[str | None, bytes | None],
        named: str | None = None,
        sweep: bool = False,
        chosen: fees.Choice | None = None,
        external_id: str | None = None,
    ) -> dict[str, Any]:
        cache_key = (actor.org_id or "", vault_id, asset_symbol, named)
        read = self._sources.get(cache_key) if isinstance(vault_id, str) and isinstance(asset_symbol, str) else None
        if read is None:
            with self.uow.read() as s:
                _, asset, rows = self._lookup(s, actor, vault_id, asset_symbol, named)
                read = tuple(r.address for r in rows), AssetRef.of(asset)
        # The first candidate prices the gas (a plain payment's is the same from any address).
        quote = self._quote(read[0][0], read[1], to, amount, chosen or fees.choice())
        # The first candidate only: the others are read if it cannot pay (sources.Unread), rarely.
        funds = {read[0][0]: fund.read(self.chain, read[0][0], read[1])}

        def work(s: Session) -> dict[str, Any]:
            vault, asset, rows = self._lookup(s, actor, vault_id, asset_symbol, named)
            if not sweep:  # a sweep pays the vault's own main address (or, topping up gas, a deposit address)
                _not_own(s, vault, to)
            if AssetRef.of(asset).token != read[1].token:
                self._sources.pop(cache_key, None)
                raise Conflict("the asset changed while the withdrawal was submitted; retry")
            if len(self._sources) >= MAX_CACHED_SOURCES:
                self._sources.clear()
            self._sources[cache_key] = tuple(r.address for r in rows), read[1]
            return self._record(
                s,
                actor,
                vault,
                asset,
                rows,
                to,
                amount,
                key,
                request_hash,
                note,
                funds,
                signed,
                (chosen or fees.choice(), quote),
                sweep=sweep,
                external_id=external_id,
            )

        for attempt in range(3):
            try:
                view = self.uow.write(work)
                break
            except sources.Unread as exc:  # nothing was written: read those addresses, outside any lock
                if attempt == 2:
                    raise Conflict("the vault's addresses changed while the withdrawal was submitted; retry") from None
                funds.update({a: fund.read(self.chain, a, read[1]) for a in exc.addresses})
        if view["state"] == states.APPROVED:
            self.on_approved(view["id"])
        return view

    def _record(
        self,
        s: Session,
        actor: Actor,
        vault: m.Vault,
        asset: m.Asset,
        rows: list[m.Address],
        to: str,
        amount: int,
        key: str | None,
        request_hash: str,
        note: str | None,
        funds: dict[str, fund.Funds],
        signed: tuple[str | None, bytes | None],
        priced: tuple[fees.Choice, fees.Quote],
        replaces: str | None = None,
        sweep: bool = False,
        external_id: str | None = None,
    ) -> dict[str, Any]:
        """Choose the source, write the withdrawal, move it as far as the policy and the funds let it go, in ``s``."""
        now = self.uow.clock()
        request_id, signature = signed
        fee_choice, quote = priced
        if request_id is not None and s.get(m.Transaction, request_id) is not None:
            raise Conflict(f"a transaction {request_id} exists: a request id is used once")
        taken = select(m.Transaction.id).where(
            m.Transaction.org_id == actor.org_id, m.Transaction.external_id == external_id
        )
        if external_id is not None and s.scalar(taken) is not None:
            raise Conflict(f"external_id {external_id!r} names another transaction")
        tx = m.Transaction(
            id=request_id or m.new_id(),
            initiator_signature=None if signature is None else signature.hex(),
            org_id=actor.org_id,
            kind=KIND,
            state=states.SUBMITTED,
            initiator_id=actor.user_id,
            idempotency_key=key,
            request_hash=request_hash,
            note=note,
            external_id=external_id,
            vault_id=vault.id,
            asset_id=asset.id,
            destination=to,
            amount=amount,
            chain_id=self.chain.chain_id,
            # caps given are fixed now (the ones not given taken from the level); a level alone follows the chain
            fee_level=None if fee_choice.explicit else fee_choice.level,
            max_fee_per_gas=quote.caps.max_fee_per_gas if fee_choice.explicit else None,
            max_priority_fee_per_gas=quote.caps.max_priority_fee_per_gas if fee_choice.explicit else None,
            gas_limit=quote.gas_limit,
            max_fee=quote.max_fee,
            replaces_id=replaces,
            sweep=sweep,
            created_at=now,
            updated_at=now,
        )
        with s.no_autoflush:  # the new row is not in the session yet: nothing to flush before the checks
            chosen = sources.choose(s, rows, funds, AssetRef.of(asset), tx, self.settings.gas_headroom)
        source = chosen.source
        tx.source_address_id = source.id
        s.add(tx)
        s.flush()
        # Nothing below reads this row back: one UPDATE at commit, not one before every query.
        with s.no_autoflush:
            self.uow.event(
                s,
                actor,
                "transaction.submitted",
                tx.id,
                kind=KIND,
                vault_id=vault.id,
                source=source.address,
                asset=asset.symbol,
                destination=to,
                amount=str(amount),
                idempotency_key=key,
                replaces=replaces,
                gas_limit=quote.gas_limit,
                max_fee=str(quote.max_fee),
                **({"sweep": True} if sweep else {}),
            )
            self.uow.move(s, actor, tx, states.PENDING_POLICY)
            # shared with a landing entry (which holds it exclusively): no decision on a state being replaced
            s.execute(select(m.Organisation.id).where(m.Organisation.id == actor.org_id).with_for_update(read=True))
            request = decide.Withdrawal(
                vault.key_id,
                actor.user_id,
                asset.contract,
                to,
                amount,
                tx.id,
                signature,
                self.chain.chain_id,
                source=source.address,
                replaces=replaces,
            )
            state, facts, _, past = self._decide(s, actor, request, tx.id, replaces)
            try:
                decide.check_initiation(state, request, facts)
            except GovernanceError as exc:  # nothing is recorded: the request is not its initiator's
                raise Invalid(str(exc)) from None
            version = self.ledger.policy_version(s, actor.org_id)
            tx.address_book_entry_id = facts.address_book_entry
            decision = decide.decide(state, facts, past)
            tx.policy_version = version
            tx.decision = decision.to_json()
            if decision.action == "block":
                outcomes.record(
                    tx,
                    outcomes.POLICY_BLOCKED,
                    f"blocked by policy: {decision.rule or 'no rule matched (default deny)'}",
                )
                self.uow.move(s, actor, tx, states.REJECTED, rule=decision.rule, policy_version=version)
                return views.transaction(tx, [], asset.symbol)  # new: no approvals yet
            shortfall = chosen.shortfall
            if shortfall is not None:
                outcomes.record(tx, outcomes.INSUFFICIENT_FUNDS, shortfall)
                self.uow.move(s, actor, tx, states.REJECTED, reason=shortfall)
                return views.transaction(tx, [], asset.symbol)  # new: no approvals yet
            if decision.action == "allow":
                self.uow.move(s, actor, tx, states.APPROVED, rule=decision.rule, policy_version=version)
            else:
                assert decision.requirement is not None
                tx.requirement = decision.requirement.to_json()
                self.uow.move(
                    s,
                    actor,
                    tx,
                    states.PENDING_APPROVAL,
                    rule=decision.rule,
                    policy_version=version,
                    requirement=tx.requirement,
                )
            return views.transaction(tx, [], asset.symbol)
