"""The rows a landed governance entry writes: users, admin credentials, policies, address book, vaults, assets.

These tables are projections of the log, kept so that lists and joins need no
replay: nothing else writes them, and nothing decides from them
(:mod:`harbour.custody.ledger` is what decisions read). Each change of an entry
writes its rows in the entry's order, in the transaction that records the entry,
so the tables and the log commit or vanish together. A vault's row needs what
the log does not carry (its public key, scheme, nodes), which the proposal kept
in the transaction's ``details``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbour.custody import assets, credentials
from harbour.custody import models as m
from harbour.custody.uow import UnitOfWork
from harbour.governance import amendments as am
from harbour.governance import changes as c
from harbour.governance import committee
from harbour.governance.log import SignedEntry


def project(
    uow: UnitOfWork,
    s: Session,
    signed: SignedEntry,
    *,
    policy_version: int,
    transaction_id: str | None,
    details: dict[str, Any] | None,
) -> None:
    """Write the rows of every change of ``signed`` (which the caller recorded), in order."""
    entry = signed.entry
    org_id, now = entry.org, uow.clock()
    for change in entry.changes:
        if isinstance(change, c.AddUser):
            key = change.approval_key.hex() if change.approval_key else None
            s.add(m.User(id=change.id, org_id=org_id, name=change.name, roles=sorted(change.roles), approval_key=key))
        elif isinstance(change, c.SetRoles):
            _user(s, change.id).roles = sorted(change.roles)
        elif isinstance(change, c.SetKey):
            _user(s, change.id).approval_key = change.approval_key.hex() if change.approval_key else None
        elif isinstance(change, c.DisableUser):
            _user(s, change.id).disabled = True
            # A disabled user's credentials die with the user; enabling them again issues none. Each row is
            # changed as an object (not one bulk UPDATE) so the audit log records every revocation.
            live = select(m.Credential).where(m.Credential.user_id == change.id, m.Credential.revoked_at.is_(None))
            for credential in s.scalars(live):
                credential.revoked_at = now
        elif isinstance(change, c.EnableUser):
            _user(s, change.id).disabled = False
        elif isinstance(change, c.IssueCredential):
            issued = m.Credential(
                id=change.id, user_id=change.user, secret_hash=change.secret_hash.hex(), created_at=now
            )
            credentials.store(issued, change.terms)
            s.add(issued)
        elif isinstance(change, c.SetPolicy):
            policy = change.policy()
            s.add(
                m.Policy(
                    org_id=org_id,
                    version=policy_version,
                    document=policy.to_document(),
                    digest=policy.digest(),
                    seq=entry.seq,
                    transaction_id=transaction_id,
                    created_at=now,
                )
            )
        elif isinstance(change, c.AddAddress):
            s.add(
                m.AddressBookEntry(
                    id=change.id,
                    org_id=org_id,
                    name=change.name,
                    address=change.address,
                    whitelisted=change.whitelisted,
                    created_by=entry.proposer,
                    created_at=now,
                )
            )
        elif isinstance(change, c.SetWhitelisted):
            _book_entry(s, change.id).whitelisted = change.whitelisted
        elif isinstance(change, c.RemoveAddress):
            _book_entry(s, change.id).removed_at = now
        elif isinstance(change, c.AddVault):
            vault = (details or {}).get("vaults", {}).get(change.id)
            if vault is None:
                raise ValueError(f"vault {change.id} has no key record in its proposal: it cannot be projected")
            # The key itself as the entry (its holders' statements) says, never only as the proposal's record did.
            signed_key = {
                "public_key": change.holding.public_key.hex(),
                "chain_code": change.holding.chain_code.hex(),
                "threshold": change.holding.threshold,
            }
            row = {**vault, **signed_key}
            s.add(m.Vault(id=change.id, org_id=org_id, name=change.name, key_id=change.key_id, created_at=now, **row))
        elif isinstance(change, committee.ReshareVault):
            _reshared(s, change, details)
        elif isinstance(change, c.AddAsset):
            kind = assets.NATIVE if change.contract is None else assets.ERC20
            s.add(
                m.Asset(
                    id=change.id,
                    org_id=org_id,
                    symbol=change.symbol,
                    kind=kind,
                    contract=change.contract,
                    decimals=change.decimals,
                    created_at=now,
                )
            )
        elif isinstance(change, am.Amendment):
            _amend(s, change, now)
        # SetQuorum, AddNode and RemoveNode have no row: they are read from the log's state.
        s.flush()


def _user(s: Session, user_id: str) -> m.User:
    user = s.get(m.User, user_id)
    assert user is not None, f"the log names user {user_id}, whose row was never projected"
    return user


def _book_entry(s: Session, entry_id: str) -> m.AddressBookEntry:
    entry = s.scalar(select(m.AddressBookEntry).where(m.AddressBookEntry.id == entry_id))
    assert entry is not None, f"the log names address-book entry {entry_id}, whose row was never projected"
    return entry


def _reshared(s: Session, change: committee.ReshareVault, details: dict[str, Any] | None) -> None:
    """The vault's row takes the committee the entry names, in the party order the reshare's proposal recorded."""
    vault = s.get(m.Vault, change.id)
    assert vault is not None, f"the log names vault {change.id}, whose row was never projected"
    nodes = (details or {}).get("reshares", {}).get(change.id, {}).get("nodes")
    if not isinstance(nodes, list) or len(nodes) != len(change.holding.holders):
        raise ValueError(f"vault {change.id} was reshared without its committee's names in the proposal")
    vault.threshold = change.holding.threshold
    vault.nodes = [str(n) for n in nodes]


def _amend(s: Session, change: am.Amendment, now: dt.datetime) -> None:
    if isinstance(change, am.RenameVault | am.ArchiveVault):
        vault = s.get(m.Vault, change.id)
        assert vault is not None, f"the log names vault {change.id}, whose row was never projected"
        if isinstance(change, am.RenameVault):
            vault.name = change.name
        else:
            vault.archived_at = now
    elif isinstance(change, am.DisableAsset | am.EnableAsset):
        asset = s.get(m.Asset, change.id)
        assert asset is not None, f"the log names asset {change.id}, whose row was never projected"
        asset.disabled = isinstance(change, am.DisableAsset)
    else:
        _book_entry(s, change.id).name = change.name
