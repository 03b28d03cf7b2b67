"""Vaults and what they hold and pay to: their addresses, the organisation's assets, its address book.

A vault is a threshold key generated on the signer nodes (ECDSA, DKLs23); the
service keeps only its public half and chain code, and derives each address
from public data alone (BIP-32, non-hardened ``m/<i>``). Assets say which coin
or token the organisation works with; address-book entries name destinations
(and whitelist them) for the policy to match on.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from harbour.chains.ethereum import address_from_public_key
from harbour.chains.evm import EvmClient
from harbour.custody import assets, inputs, views
from harbour.custody import models as m
from harbour.custody.actors import ANYONE, Actor, require
from harbour.custody.assets import AssetRef
from harbour.custody.errors import Conflict, Invalid, Unavailable
from harbour.custody.signer import Signer
from harbour.custody.uow import UnitOfWork
from harbour.custody.views import Page


class Vaults:
    def __init__(self, uow: UnitOfWork, chain: EvmClient, signer: Signer) -> None:
        self.uow = uow
        self.chain = chain
        self.signer = signer

    def create_vault(
        self, actor: Actor, *, name: str, threshold: int = 2, nodes: list[str] | None = None
    ) -> dict[str, Any]:
        """Generate the vault's key on the signer nodes (ECDSA, DKLs23) and record its public half."""
        require(actor, "admin")
        inputs.name(name, "vault name")
        try:
            members = [self.signer.node(n) for n in nodes] if nodes else list(self.signer.nodes)
        except KeyError as exc:
            raise Invalid(f"unknown signer node {exc.args[0]!r}") from None
        if not members:
            raise Conflict("no signer nodes are configured (custody.json: nodes)")
        if len({d.node_id for d in members}) != len(members):
            raise Invalid("a node is listed twice")
        if type(threshold) is not int or not 2 <= threshold <= len(members):
            raise Invalid(f"threshold must be 2..{len(members)} (a 1-of-n key is a single point of failure)")
        with self.uow.read() as s:
            if s.scalar(select(m.Vault).where(m.Vault.org_id == actor.org_id, m.Vault.name == name)):
                raise Conflict(f"vault {name!r} exists")
        key_id = f"vault-{secrets.token_hex(8)}"
        try:
            key = self.signer.keygen(key_id, threshold, members)
        except Exception as exc:
            raise Unavailable(f"key generation on the signer nodes failed: {exc}") from exc
        with self.uow.tx() as s:
            vault = m.Vault(
                org_id=actor.org_id,
                name=name,
                key_id=key_id,
                scheme=key.scheme,
                threshold=threshold,
                nodes=[d.name for d in members],
                public_key=key.public.group_public_key.encode().hex(),
                chain_code=key.chain_code.hex(),
            )
            s.add(vault)
            try:
                s.flush()
            except IntegrityError:
                raise Conflict(f"vault {name!r} exists") from None
            self.uow.event(
                s,
                actor,
                "vault.created",
                vault.id,
                name=name,
                key_id=key_id,
                threshold=threshold,
                nodes=vault.nodes,
                public_key=vault.public_key,
            )
            return views.vault(vault)

    def list_vaults(self, actor: Actor, page: Page) -> dict[str, Any]:
        require(actor, *ANYONE)
        with self.uow.read() as s:
            return views.page_document(
                s, select(m.Vault).where(m.Vault.org_id == actor.org_id), m.Vault, page, views.vault
            )

    def get_vault(self, actor: Actor, vault_id: str) -> dict[str, Any]:
        """The vault with each address's on-chain balance of every asset (at the latest block)."""
        require(actor, *ANYONE)
        with self.uow.read() as s:
            vault = self.uow.get(s, m.Vault, vault_id, actor.org_id, "vault")
            addresses = list(
                s.scalars(select(m.Address).where(m.Address.vault_id == vault.id).order_by(m.Address.index))
            )
            held = [
                AssetRef.of(a)
                for a in s.scalars(select(m.Asset).where(m.Asset.org_id == actor.org_id).order_by(m.Asset.symbol))
            ]
            out = views.vault(vault)
        balances: dict[str, int] = {a.symbol: 0 for a in held}
        items = []
        for addr in addresses:
            row = views.address(addr)
            row["balances"] = {}
            for asset in held:
                value = assets.balance(self.chain, asset, addr.address)
                row["balances"][asset.symbol] = str(value)
                balances[asset.symbol] += value
            items.append(row)
        out["addresses"] = items
        out["balances"] = {k: str(v) for k, v in balances.items()}
        return out

    def derive_address(self, actor: Actor, vault_id: str, *, label: str | None = None) -> dict[str, Any]:
        """The vault key's next non-hardened child ``m/<i>``, derived from public data only (BIP-32)."""
        require(actor, "admin")
        if label is not None:
            inputs.name(label, "label")
        with self.uow.tx() as s:
            vault = self.uow.get(s, m.Vault, vault_id, actor.org_id, "vault")
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
        require(actor, "admin")
        inputs.symbol(symbol)
        assets.check_definition(kind, contract, decimals)
        checked = inputs.address(contract, "contract") if contract is not None else None
        with self.uow.tx() as s:
            if kind == assets.NATIVE and s.scalar(
                select(m.Asset).where(m.Asset.org_id == actor.org_id, m.Asset.kind == assets.NATIVE)
            ):
                raise Conflict("the native asset is registered already")
            row = m.Asset(org_id=actor.org_id, symbol=symbol, kind=kind, contract=checked, decimals=decimals)
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                raise Conflict(f"asset {symbol} exists") from None
            self.uow.event(
                s, actor, "asset.added", row.id, symbol=symbol, kind=kind, contract=checked, decimals=decimals
            )
            return views.asset(row)

    def list_assets(self, actor: Actor, page: Page) -> dict[str, Any]:
        require(actor, *ANYONE)
        with self.uow.read() as s:
            return views.page_document(
                s, select(m.Asset).where(m.Asset.org_id == actor.org_id), m.Asset, page, views.asset
            )

    def add_address_book_entry(
        self, actor: Actor, *, name: str, address: str, whitelisted: bool = False
    ) -> dict[str, Any]:
        require(actor, "admin")
        inputs.name(name)
        checked = inputs.address(address)
        if type(whitelisted) is not bool:
            raise Invalid("whitelisted must be true or false")
        with self.uow.tx() as s:
            row = m.AddressBookEntry(
                org_id=actor.org_id, name=name, address=checked, whitelisted=whitelisted, created_by=actor.user_id
            )
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                raise Conflict(f"{checked} is in the address book already") from None
            self.uow.event(s, actor, "address_book.added", row.id, name=name, address=checked, whitelisted=whitelisted)
            return views.address_book_entry(row)

    def list_address_book(self, actor: Actor, page: Page) -> dict[str, Any]:
        require(actor, *ANYONE)
        with self.uow.read() as s:
            stmt = select(m.AddressBookEntry).where(m.AddressBookEntry.org_id == actor.org_id)
            return views.page_document(s, stmt, m.AddressBookEntry, page, views.address_book_entry)
