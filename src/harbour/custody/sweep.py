"""Sweeping: moving what deposit addresses hold into their vault's main address, by the policy's settings.

A vault's deposit addresses (``m/1``, ``m/2``, ...) each pay only from what
they hold (:mod:`harbour.custody.sources`), so funds spread over many of them
are hard to spend. The policy in force names, per asset, a threshold and the
user in whose name sweeps are submitted (``sweeps`` in the policy document,
docs/policy.md): the admin quorum adopts it with the policy. A pass
(:meth:`Sweeps.run_once`) submits, for each deposit address holding at least
the threshold, an ordinary withdrawal flagged ``sweep`` from that address to
the vault's main address. It goes through the policy (which may block it or
ask for approvals), the funds check, the signer nodes' own judgement and the
confirmation of its receipt, exactly as any withdrawal.

- **ETH**: the sweep sends the balance less the fee reserve the funds check
  keeps back (gas limit times today's fee cap times the headroom); what stays
  behind is that reserve less the fee actually paid, which no later sweep could
  move (it cannot pay its own reserve).
- **Tokens**: the whole balance, and only when the address holds the ETH its
  fee reserve needs. Otherwise the pass reports it as skipped, and with the
  setting's ``gas_top_up`` it first sends the address what is missing from the
  main address: a top-up, itself a withdrawal flagged ``sweep`` that the policy
  decides; the token sweep follows on a pass after it is confirmed.

A sweep the policy or an approver rejected is not submitted again under the
same policy version (it would be rejected again on every pass); a new policy
retries it. An address with a withdrawal of any kind in flight is left alone until it is
final, so a sweep never races another payment from the same address; for the
same reason a pass sweeps an address once, tokens before ETH (an ETH sweep
would leave a token sweep no gas).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbour.chains.evm import EvmClient
from harbour.custody import funds as fund
from harbour.custody import kinds, outcomes, states
from harbour.custody import models as m
from harbour.custody.actors import Actor
from harbour.custody.assets import AssetRef
from harbour.custody.errors import CustodyError
from harbour.custody.ledger import Ledger
from harbour.custody.settings import Settings
from harbour.custody.uow import UnitOfWork
from harbour.custody.withdrawals import Withdrawals
from harbour.governance import policy as pol
from harbour.governance.state import OrgState

log = logging.getLogger(__name__)

MAIN_INDEX: Final = 0
"""The vault's main address is its first, ``m/0``: what withdrawals pay from by default."""


@dataclass(frozen=True)
class Swept:
    """What a pass did for one deposit address and asset: the sweep's id, or why there was none."""

    address: str
    asset: str
    amount: int
    transaction_id: str | None
    state: str | None
    skipped: str | None
    top_up: bool = False
    """ETH sent from the main address to pay a token sweep's gas (``amount`` is that ETH)."""


@dataclass(frozen=True)
class _Target:
    org_id: str
    vault_id: str
    address: str
    main: str
    topping_up: bool
    """A top-up to this address is in flight: do not send another."""


def refusal(state: OrgState, policy: pol.Policy) -> str | None:
    """Why ``policy``'s sweep settings cannot run in ``state`` (an unknown asset, a user who cannot initiate), or None.

    Checked when the policy is proposed and again by every pass, which skips a
    setting the log no longer supports (the user was disabled since) and says so.
    """
    for setting in policy.sweeps:
        found = state.asset_by_symbol(setting.asset)
        if found is None:
            return f"sweeps: {setting.asset!r} is not an asset of the organisation"
        user = state.users.get(setting.initiator)
        if user is None or user.disabled or "initiator" not in user.roles:
            return f"sweeps: {setting.initiator!r} ({setting.asset}) is not an enabled user with the initiator role"
        if setting.gas_top_up and found.contract is None:
            return f"sweeps: gas_top_up is for tokens, and {setting.asset} is the native coin"
    return None


class Sweeps:
    def __init__(
        self, uow: UnitOfWork, chain: EvmClient, settings: Settings, ledger: Ledger, withdrawals: Withdrawals
    ) -> None:
        self.uow = uow
        self.chain = chain
        self.settings = settings
        self.ledger = ledger
        self.withdrawals = withdrawals

    def run_once(self) -> list[Swept]:
        """One pass over every organisation whose policy sets sweeps; returns what was submitted or skipped."""
        done: list[Swept] = []
        with self.uow.read() as s:
            orgs = list(s.scalars(select(m.Organisation.id)))
        for org_id in orgs:
            with self.uow.read() as s:
                state = self.ledger.state(s, org_id)
                if state.policy is None or not state.policy.sweeps:
                    continue
                assets = {a.symbol: AssetRef.of(a) for a in s.scalars(select(m.Asset).where(m.Asset.org_id == org_id))}
                targets = self._targets(s, org_id)
                refused = self._refused(s, org_id)
            busy: set[str] = set()
            native = next((a for a in assets.values() if a.native), None)
            # Tokens first: an ETH sweep leaves only dust, and a token sweep needs the ETH for its gas.
            for setting in sorted(state.policy.sweeps, key=lambda w: w.asset in assets and assets[w.asset].native):
                user, asset = state.users.get(setting.initiator), assets.get(setting.asset)
                problem = refusal(state, pol.Policy((), (setting,)))
                if problem is not None or user is None or asset is None:
                    log.warning("organisation %s: a sweep setting cannot run: %s", org_id, problem or "no such asset")
                    continue
                actor = Actor(user_id=user.id, org_id=org_id, name=user.name, roles=frozenset(user.roles))
                for target in targets:
                    if target.address in busy:  # swept once in this pass: the next pass sees what is left
                        continue
                    if (target.address, target.main, asset.id) in refused:  # the same policy would refuse it again
                        continue
                    swept = self._sweep(actor, target, asset, setting.threshold)
                    wanted = swept is not None and swept.skipped is not None and setting.gas_top_up
                    if wanted and native is not None and not target.topping_up:
                        swept = self._top_up(actor, target, native, asset, refused) or swept
                    if swept is not None:
                        done.append(swept)
                        if swept.transaction_id is not None:
                            busy.add(target.address)
        return done

    def _refused(self, s: Session, org_id: str) -> set[tuple[str, str, str]]:
        """(source, destination, asset id) of each sweep or top-up rejected under the policy in force.

        They are not tried again until the policy changes: otherwise a sweep the
        policy blocks (or an approver rejects) would be submitted, and rejected,
        on every pass.
        """
        version = self.ledger.policy_version(s, org_id)
        return {
            (address, destination, asset_id)
            for address, destination, asset_id in s.execute(
                select(m.Address.address, m.Transaction.destination, m.Transaction.asset_id)
                .join(m.Address, m.Address.id == m.Transaction.source_address_id)
                .where(
                    m.Transaction.org_id == org_id,
                    m.Transaction.sweep.is_(True),
                    m.Transaction.state == states.REJECTED,
                    # a shortfall is a race with another payment, not a judgement: the next pass may try again
                    m.Transaction.sub_status != outcomes.INSUFFICIENT_FUNDS,
                    m.Transaction.policy_version == version,
                )
            )
            if asset_id is not None and destination is not None
        }

    def _targets(self, s: Session, org_id: str) -> list[_Target]:
        """Every deposit address of the organisation's vaults with nothing in flight from it, beside its main one."""
        flying = s.execute(
            select(m.Transaction.source_address_id, m.Transaction.destination, m.Transaction.sweep).where(
                m.Transaction.org_id == org_id, m.Transaction.state.in_([states.SUBMITTED, *states.IN_FLIGHT])
            )
        ).all()
        busy = {source for source, _, _ in flying}
        topping = {destination for _, destination, sweep in flying if sweep}
        rows = list(
            s.scalars(
                select(m.Address)
                .join(m.Vault, m.Vault.id == m.Address.vault_id)
                .where(m.Vault.org_id == org_id)
                .order_by(m.Address.vault_id, m.Address.index)
            )
        )
        mains = {a.vault_id: a.address for a in rows if a.index == MAIN_INDEX}
        return [
            _Target(org_id, a.vault_id, a.address, mains[a.vault_id], a.address in topping)
            for a in rows
            if a.index != MAIN_INDEX and a.vault_id in mains and a.id not in busy
        ]

    def _sweep(self, actor: Actor, target: _Target, asset: AssetRef, threshold: int) -> Swept | None:
        """Submit the sweep of ``asset`` from ``target`` if it holds ``threshold`` or more; None if it holds less."""
        funds = fund.read(self.chain, target.address, asset)
        if funds.asset < threshold:
            return None
        reserve = fund.fee_reserve(kinds.of("withdrawal"), asset, None, funds.max_fee, self.settings.gas_headroom)
        if asset.native:
            amount = funds.native - reserve
            if amount <= 0:
                return Swept(target.address, asset.symbol, 0, None, None, "its balance would not pay the fee")
        else:
            amount = funds.asset
            if funds.native < reserve:
                why = f"it holds {funds.native} wei of ETH, and the gas of a token transfer needs {reserve}"
                return Swept(target.address, asset.symbol, amount, None, None, why)
        try:
            tx = self.withdrawals.submit_withdrawal(
                actor,
                vault_id=target.vault_id,
                asset=asset.symbol,
                to=target.main,
                amount=amount,
                source_address=target.address,
                sweep=True,
            )
        except CustodyError as exc:
            log.warning("sweep of %s from %s: %s", asset.symbol, target.address, exc)
            return Swept(target.address, asset.symbol, amount, None, None, str(exc))
        return Swept(target.address, asset.symbol, amount, tx["id"], tx["state"], None)

    def _top_up(
        self, actor: Actor, target: _Target, native: AssetRef, token: AssetRef, refused: set[tuple[str, str, str]]
    ) -> Swept | None:
        """Send ``target`` from its vault's main address the ETH a sweep of ``token`` is missing for gas.

        None if it is missing none, or a top-up to it was refused under this policy already.
        """
        if (target.main, target.address, native.id) in refused:
            return None
        funds = fund.read(self.chain, target.address, token)
        reserve = fund.fee_reserve(kinds.of("withdrawal"), token, None, funds.max_fee, self.settings.gas_headroom)
        missing = reserve - funds.native
        if missing <= 0:
            return None
        try:
            tx = self.withdrawals.submit_withdrawal(
                actor,
                vault_id=target.vault_id,
                asset=native.symbol,
                to=target.address,
                amount=missing,
                source_address=target.main,
                sweep=True,
            )
        except CustodyError as exc:
            log.warning("gas top-up of %s for its %s: %s", target.address, token.symbol, exc)
            return None
        return Swept(target.address, native.symbol, missing, tx["id"], tx["state"], None, top_up=True)
