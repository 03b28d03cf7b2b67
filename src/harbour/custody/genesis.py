"""A new organisation: its genesis entry, the one entry nobody signs, and where trust in it starts.

:meth:`Founding.bootstrap` is run by whoever holds the service's database (the
``harbour custody bootstrap`` command, never the API). It writes the
organisation's genesis (:mod:`harbour.governance.log`, seq 0): the founding
admins, each with an approval key and a first API credential
(``credential.issue``, whose token is returned once), the admin quorum (how many
admins besides the proposer sign every later entry), the deployment's signer
nodes (``node.add``: the nodes the organisation's vault keys may be made on), and optionally the first
other users, assets and the initial policy (default: deny everything). The
genesis carries no signatures: it is trusted because whoever verifies the log
was given its hash, which the organisation row keeps. Bootstrap enrols the
genesis on the deployment's signer nodes before it writes anything (each node
pins its hash, and binds the organisation's vault keys to it) and prints the
hash, for each node's operator to compare with the one their node holds.

An organisation whose genesis names fewer admins than the quorum needs (the
proposer and ``quorum`` others) can never sign an entry: it runs as its genesis
made it, and every proposal is refused saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbour.chains.evm import EvmClient
from harbour.custody import assets, inputs, policyrefs, views
from harbour.custody import models as m
from harbour.custody.actors import ROLES, Actor
from harbour.custody.errors import Conflict, Invalid, Unavailable
from harbour.custody.ledger import Ledger
from harbour.custody.projection import project
from harbour.custody.signer import Signer
from harbour.custody.uow import UnitOfWork
from harbour.custody.users import new_secret, token
from harbour.governance import changes as c
from harbour.governance import policy as pol
from harbour.governance.fields import GovernanceError
from harbour.governance.log import Entry, SignedEntry
from harbour.governance.state import OrgState, User, genesis_state


@dataclass(frozen=True)
class Founder:
    """A user the genesis names: an admin among them is a founding admin and gets the first credentials."""

    name: str
    roles: Sequence[str] = ("admin",)
    approval_key: str | None = None
    """Hex Ed25519 public key; every admin and approver has one."""
    id: str | None = None
    """Chosen here, so that an initial policy can name the user by id (or by name); by default a new random id."""


@dataclass(frozen=True)
class FoundingAsset:
    symbol: str
    kind: str = assets.NATIVE
    contract: str | None = None
    decimals: int = assets.NATIVE_DECIMALS


@dataclass(frozen=True)
class Charter:
    """Everything a genesis says."""

    name: str
    users: Sequence[Founder]
    quorum: int = 1
    assets: Sequence[FoundingAsset] = field(default_factory=tuple)
    policy: dict[str, Any] | None = None


class Founding:
    def __init__(
        self,
        uow: UnitOfWork,
        ledger: Ledger,
        chain_id: int,
        signer: Signer | None = None,
        chain: EvmClient | None = None,
    ) -> None:
        self.uow = uow
        self.ledger = ledger
        self.chain_id = chain_id
        self.signer = signer
        """The deployment's signer nodes (None, or none configured: nothing to enrol)."""
        self.chain = chain
        """Asks each founding ERC-20's contract whether it is the token declared (None: nothing asked)."""

    def bootstrap(self, charter: Charter) -> dict[str, Any]:
        """Create the organisation from its genesis; returns it, its users and each founding admin's token.

        With signer nodes configured, the genesis is enrolled on every one of them
        first, and only then written: an organisation the service holds is one
        its nodes know, so the keys made for it can be bound to it
        (``docs/nodes.md``, "Organisations"). If a node cannot be reached, nothing
        is written (a node that did enrol keeps a genesis nothing uses).
        """
        if inputs.name(charter.name, "organisation") != charter.name:
            raise Invalid("the organisation's name must be in its normal form (NFC, trimmed, single spaces)")
        nodes = list(self.signer.nodes) if self.signer is not None else []
        changes, secrets = _changes(charter)
        if self.chain is not None:
            for change in changes:
                if isinstance(change, c.AddAsset) and change.contract is not None:
                    assets.check_token(self.chain, change.contract, change.symbol, change.decimals)
        changes[1:1] = [c.AddNode(d.name, d.sign_pk) for d in nodes]
        with self.uow.read() as s:
            _name_free(s, charter.name)
        genesis, state = _genesis(m.new_id(), changes, int(self.uow.clock().timestamp()))
        enrolled: dict[str, int] = {}
        if self.signer is not None and self.signer.nodes:
            try:
                enrolled = self.signer.enrol(genesis)
            except Exception as exc:
                raise Unavailable(
                    f"enrolling the genesis on the signer nodes failed, so the organisation was not created: {exc}"
                ) from exc
        entry, org_id = genesis.entry, genesis.entry.org
        with self.uow.tx() as s:
            _name_free(s, charter.name)
            organisation = m.Organisation(id=org_id, name=charter.name, genesis=genesis.hash.hex())
            s.add(organisation)
            s.flush()
            self.ledger.record(s, org_id, genesis, None)
            project(self.uow, s, genesis, policy_version=1, transaction_id=None, details=None)
            first = state.users[entry.proposer]
            actor = Actor(first.id, org_id, first.name, first.roles)
            self.uow.event(s, actor, "organisation.created", org_id, name=charter.name, genesis=genesis.hash.hex())
            self.uow.event(
                s,
                None,
                "governance.entry",
                org_id,
                org_id=org_id,
                seq=0,
                hash=genesis.hash.hex(),
                prev=entry.prev.hex(),
                proposer=entry.proposer,
                signers=[],
                transaction=None,
                changes=[c.describe(change) for change in changes],
            )
            users = [views.user(u) for u in s.scalars(select(m.User).where(m.User.org_id == org_id))]
            credentials = [
                {"user_id": user_id, "name": state.users[user_id].name, "token": token(credential_id, secret)}
                for user_id, credential_id, secret in secrets
            ]
            return {
                "organisation": views.organisation(organisation, self.chain_id),
                "genesis": genesis.hash.hex(),
                "quorum": state.quorum,
                "users": users,
                "credentials": credentials,
                "enrolled": sorted(enrolled),
            }


def _name_free(s: Session, name: str) -> None:
    if s.scalar(select(m.Organisation.id).where(m.Organisation.name == name)):
        raise Conflict(f"organisation {name!r} exists")


def _genesis(org_id: str, changes: Sequence[c.Change], at: int) -> tuple[SignedEntry, OrgState]:
    """The genesis entry of these changes, checked the way every verifier will check it."""
    admins = [ch for ch in changes if isinstance(ch, c.AddUser) and "admin" in ch.roles]
    try:
        entry = Entry(
            org=org_id,
            seq=0,
            prev=bytes(32),
            proposer=admins[0].id if admins else "-",
            at=at,
            changes=tuple(changes),
        )
        data = entry.encode()
        Entry.decode(data)
        genesis = SignedEntry(data, ())
        return genesis, genesis_state(genesis)
    except GovernanceError as exc:
        raise Invalid(f"the genesis would not be a valid one: {exc}") from None


def _changes(charter: Charter) -> tuple[list[c.Change], list[tuple[str, str, bytes]]]:
    """The genesis changes, and (user id, credential id, secret) of each founding admin's first credential."""
    if type(charter.quorum) is not int or charter.quorum < 1:
        raise Invalid("the quorum is how many admins besides the proposer sign every change: at least 1")
    changes: list[c.Change] = [c.SetQuorum(charter.quorum)]
    issued: list[tuple[str, str, bytes]] = []
    credentials: list[c.Change] = []
    names = set()
    for founder in charter.users:
        name = inputs.name(founder.name, "user name")
        if name in names:
            raise Invalid(f"two users named {name!r}")
        names.add(name)
        roles = frozenset(founder.roles)
        if not roles or not roles <= ROLES:
            raise Invalid(f"roles must be a non-empty list drawn from {', '.join(sorted(ROLES))}")
        key = inputs.approval_key(founder.approval_key)
        if {"admin", "approver"} & roles and key is None:
            raise Invalid(f"{name} signs approvals (admin or approver): give their approval key")
        user_id = founder.id or m.new_id()
        changes.append(c.AddUser(user_id, name, roles, None if key is None else bytes.fromhex(key)))
        if "admin" in roles:
            secret, digest = new_secret()
            credential_id = m.new_id()
            issued.append((user_id, credential_id, secret))
            credentials.append(c.IssueCredential(credential_id, user_id, digest))
    if not issued:
        raise Invalid("the genesis names at least one admin")
    changes.extend(credentials)
    for asset in charter.assets:
        symbol = inputs.symbol(asset.symbol)
        assets.check_definition(asset.kind, asset.contract, asset.decimals)
        contract = None if asset.contract is None else inputs.address(asset.contract, "contract")
        changes.append(c.AddAsset(m.new_id(), symbol, contract, asset.decimals))
    try:
        written = pol.Policy.from_document(charter.policy if charter.policy is not None else {"rules": []})
    except pol.PolicyError as exc:
        raise Invalid(f"policy: {exc}") from None
    users = {ch.id: User(ch.id, ch.name, ch.roles, ch.approval_key) for ch in changes if isinstance(ch, c.AddUser)}
    policy = policyrefs.resolve(written, users.values())
    problem = policyrefs.refusal(policy, users)
    if problem is not None:
        raise Invalid(f"policy: {problem}")
    changes.append(c.policy_change(policy.to_document()))
    return changes, issued
