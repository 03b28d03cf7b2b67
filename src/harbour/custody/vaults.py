"""Vaults and what they hold: their addresses and the organisation's assets.

A vault is a threshold key generated on the signer nodes (ECDSA, DKLs23); the
service keeps only its public half and chain code, and derives each address
from public data alone (BIP-32, non-hardened ``m/<i>``). The key is generated as
a key of the organisation (``org``, its genesis hash), so every node binds it to
the organisation's governance log and signs with it only what that log allows.
It is the organisation's vault only once a governance entry binds it
(``vault.add``): the signer nodes sign for such keys only, so creating a vault
runs key generation and then proposes the binding, and the vault exists once
the admin quorum signed it. The entry names the key's public key and carries
every holder's signed statement that it holds the key for this organisation
(:mod:`harbour.governance.holding`), and the key is made only on nodes the log
names (``node.add``; the genesis names the deployment's nodes). Assets say which coin or token the organisation
works with and which contract a symbol the policy names is; adding one is a
governance change too (``asset.add``), proposed only once the token's contract
answers as the token declared (:mod:`harbour.chains.tokeninfo`).
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select

from harbour.chains.ethereum import address_from_public_key
from harbour.chains.evm import ChainError, EvmClient
from harbour.custody import assets, inputs, views
from harbour.custody import models as m
from harbour.custody.actors import ANYONE, Actor, require
from harbour.custody.assets import AssetRef
from harbour.custody.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from harbour.custody.governance import Governance, check_can_change
from harbour.custody.ledger import Ledger
from harbour.custody.signer import Signer
from harbour.custody.uow import UnitOfWork
from harbour.custody.views import Page
from harbour.governance import changes as c
from harbour.governance.holding import Holding
from harbour.governance.state import OrgState
from harbour.util.text import name_key


def _name_free(state: OrgState, name: str) -> None:
    key = name_key(name)
    if any(name_key(v.name) == key for v in state.vaults.values()):
        raise Conflict(f"vault {name!r} exists (names compare ignoring case and width)")


class Vaults:
    def __init__(
        self, uow: UnitOfWork, chain: EvmClient, signer: Signer, ledger: Ledger, governance: Governance
    ) -> None:
        self.uow = uow
        self.chain = chain
        self.signer = signer
        self.ledger = ledger
        self.governance = governance

    def create_vault(
        self, actor: Actor, *, name: str, threshold: int = 2, nodes: list[str] | None = None
    ) -> dict[str, Any]:
        """Generate a key on the signer nodes (ECDSA, DKLs23), then propose binding it as a vault (``vault.add``).

        Whatever would refuse the proposal is checked before the key is made; the
        key's public half waits in the proposal until the entry lands.
        """
        require(actor, "admin")
        name = inputs.name(name, "vault name")
        try:
            members = [self.signer.node(n) for n in nodes] if nodes else list(self.signer.nodes)
        except KeyError as exc:
            raise NotFound(f"unknown signer node {exc.args[0]!r}") from None
        if not members:
            raise Conflict("no signer nodes are configured (custody.json: nodes)")
        if len({d.node_id for d in members}) != len(members):
            raise Invalid("a node is listed twice")
        if type(threshold) is not int or threshold < 2:
            raise Invalid("threshold must be an integer of at least 2 (a 1-of-n key is a single point of failure)")
        if threshold > len(members):
            raise Conflict(f"threshold must be 2..{len(members)}: there are {len(members)} signer node(s)")
        if 2 * threshold <= len(members):
            raise Conflict(
                f"threshold must be above half the {len(members)} nodes ({len(members) // 2 + 1} or more): then any "
                "two signer sets share a node, which keeps velocity limits and one payment per request exact"
            )
        with self.uow.read() as s:
            state = self.ledger.state(s, actor.org_id)
        proposer = state.users.get(actor.user_id)
        if proposer is None or not proposer.active_admin:
            raise Forbidden(f"{actor.name} is not an enabled admin with an approval key in the governance log")
        check_can_change(state)
        _name_free(state, name)
        strangers = [d.name for d in members if d.sign_pk not in state.nodes]
        if strangers:
            raise Conflict(
                f"the governance log does not name node(s) {', '.join(strangers)} as the organisation's: a vault key "
                "is made only on nodes a node.add the admins signed names"
            )
        key_id = f"vault-{secrets.token_hex(8)}"
        genesis = self.ledger.log(actor.org_id).genesis
        try:
            # Enrolled at bootstrap; again here for a node added to the deployment since (it changes nothing else).
            self.signer.enrol(genesis, members)
            self.signer.push(self.ledger.log(actor.org_id), members)  # the nodes the log names, as it names them now
            key = self.signer.keygen(key_id, threshold, members, org=genesis.hash.hex())
            statements = self.signer.holdings(key_id, members)
        except Exception as exc:
            raise Unavailable(f"key generation on the signer nodes failed: {exc}") from exc
        holding = Holding(
            org=genesis.hash,
            key_id=key_id,
            public_key=key.public.group_public_key.encode(),
            chain_code=key.chain_code,
            threshold=threshold,
            holders=tuple(sorted(d.sign_pk for d in members)),
        )
        vault_id = m.new_id()
        record = {
            "scheme": key.scheme,
            "threshold": threshold,
            "nodes": [d.name for d in members],
            "public_key": key.public.group_public_key.encode().hex(),
            "chain_code": key.chain_code.hex(),
        }

        def build(now: OrgState) -> list[c.Change]:
            _name_free(now, name)
            return [c.AddVault(vault_id, name, holding, tuple(statements))]

        return self.governance.propose(actor, build, details={"vaults": {vault_id: record}})

    def list_vaults(self, actor: Actor, page: Page) -> dict[str, Any]:
        require(actor, *ANYONE)
        with self.uow.read() as s:
            return views.page_document(
                s, select(m.Vault).where(m.Vault.org_id == actor.org_id), m.Vault, page, views.vault
            )

    def get_vault(self, actor: Actor, vault_id: str) -> dict[str, Any]:
        """The vault with each address's on-chain balance of every asset (at the latest block).

        One asset whose balance cannot be read (a contract that stopped answering
        as a token) is named in ``unavailable_assets`` with the reason, and the
        rest of the view stands; the native coin's balance is read as before, so
        a chain that does not answer at all is still a 503.
        """
        require(actor, *ANYONE)
        with self.uow.read() as s:
            vault = self.uow.get(s, m.Vault, vault_id, actor.org_id, "vault")
            addresses = list(
                s.scalars(select(m.Address).where(m.Address.vault_id == vault.id).order_by(m.Address.index))
            )
            rows = list(s.scalars(select(m.Asset).where(m.Asset.org_id == actor.org_id).order_by(m.Asset.symbol)))
            held = [AssetRef.of(a) for a in rows]
            out = views.vault(vault)
        unavailable: dict[str, str] = {}
        read: dict[tuple[str, str], int] = {}
        for asset in held:
            for addr in addresses:
                try:
                    read[asset.symbol, addr.address] = assets.balance(self.chain, asset, addr.address)
                except ChainError as exc:
                    if asset.native:
                        raise
                    unavailable[asset.symbol] = f"balanceOf(address) of {asset.contract} could not be read: {exc}"
                    break
        available = [a.symbol for a in held if a.symbol not in unavailable]
        items = []
        for addr in addresses:
            row = views.address(addr)
            row["balances"] = {symbol: str(read[symbol, addr.address]) for symbol in available}
            items.append(row)
        out["addresses"] = items
        out["balances"] = {symbol: str(sum(read[symbol, a.address] for a in addresses)) for symbol in available}
        out["unavailable_assets"] = unavailable
        out["disabled_assets"] = [a.symbol for a in rows if a.disabled]
        return out

    def derive_address(self, actor: Actor, vault_id: str, *, label: str | None = None) -> dict[str, Any]:
        """The vault key's next non-hardened child ``m/<i>``, derived from public data only (BIP-32)."""
        require(actor, "admin")
        if label is not None:
            label = inputs.name(label, "label")
        with self.uow.tx() as s:
            vault = self.uow.get(s, m.Vault, vault_id, actor.org_id, "vault")
            bound = self.ledger.state(s, actor.org_id).vaults.get(vault.id)
            if bound is not None and bound.archived:
                raise Conflict(f"vault {bound.name!r} is archived: it takes no new address")
            s.refresh(vault, with_for_update=True)
            index = vault.next_index
            path = f"m/{index}"
            point = self.signer.child_public_key(vault.key_id, path)
            address = address_from_public_key(point)
            row = m.Address(
                vault_id=vault.id,
                index=index,
                path=path,
                address=address,
                label=label,
                next_nonce=self.chain.nonce(address, "latest"),
            )
            vault.next_index = index + 1
            s.add(row)
            s.flush()
            self.uow.event(s, actor, "address.derived", row.id, vault_id=vault.id, path=path, address=address)
            return views.address(row)

    def list_addresses(self, actor: Actor, vault_id: str, page: Page) -> dict[str, Any]:
        require(actor, *ANYONE)
        with self.uow.read() as s:
            vault = self.uow.get(s, m.Vault, vault_id, actor.org_id, "vault")
            return views.page_document(
                s, select(m.Address).where(m.Address.vault_id == vault.id), m.Address, page, views.address
            )

    def add_asset(
        self, actor: Actor, *, symbol: str, kind: str, contract: str | None = None, decimals: int = 18
    ) -> dict[str, Any]:
        """Propose registering an asset (``asset.add``): the symbol the policy names, and its contract."""
        require(actor, "admin")
        inputs.symbol(symbol)
        assets.check_definition(kind, contract, decimals)
        checked = inputs.address(contract, "contract") if contract is not None else None
        if checked is not None:
            assets.check_token(self.chain, checked, symbol, decimals)

        def build(state: OrgState) -> list[c.Change]:
            if state.asset_by_symbol(symbol) is not None:
                raise Conflict(f"asset {symbol} exists")
            if state.asset_for(checked) is not None:
                raise Conflict(f"{checked or 'the native asset'} is registered already")
            return [c.AddAsset(m.new_id(), symbol, checked, decimals)]

        return self.governance.propose(actor, build)

    def list_assets(self, actor: Actor, page: Page) -> dict[str, Any]:
        require(actor, *ANYONE)
        with self.uow.read() as s:
            return views.page_document(
                s, select(m.Asset).where(m.Asset.org_id == actor.org_id), m.Asset, page, views.asset
            )
