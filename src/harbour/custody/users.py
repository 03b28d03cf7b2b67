"""Users of an organisation and the API credentials they authenticate with.

Who a user is, their roles, their approval key and whether they are disabled
change only by governance entries (:mod:`harbour.custody.governance`): each
method here that changes them proposes one and returns the governance
transaction, which its admins must sign. So does an admin's API credential: a
credential is what proposes governance changes, so an admin's credentials are
exactly those the log issued (``credential.issue``), and an admin credential the
log does not know authenticates without the admin role. A credential for anyone
else is one admin's act, at once: it carries no approval authority (approvals
are signatures by keys the log registered), and docs/custody.md says what it
does let its holder do.

A credential is ``hbk_<id>_<secret>``: the service stores only the secret's
SHA-256 (the log holds the same hash for an admin's), so a copy of the database
does not let anyone in, and compares it in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbour.custody import credentials, inputs, views
from harbour.custody import models as m
from harbour.custody.actors import ANYONE, ROLES, Actor, require
from harbour.custody.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from harbour.custody.governance import Governance
from harbour.custody.ledger import Ledger
from harbour.custody.uow import UnitOfWork
from harbour.custody.views import Page
from harbour.governance import changes as c
from harbour.governance import credential_terms as ct
from harbour.governance.state import OrgState, User
from harbour.util.text import name_key

TOKEN_PREFIX: Final = "hbk"  # noqa: S105 (a prefix, not a secret)


def new_secret() -> tuple[bytes, bytes]:
    """A credential's secret and the SHA-256 the service (and, for an admin, the log) keeps of it."""
    secret = secrets.token_bytes(32)
    return secret, hashlib.sha256(secret).digest()


def token(credential_id: str, secret: bytes) -> str:
    return f"{TOKEN_PREFIX}_{credential_id}_{secret.hex()}"


def user_roles(roles: object) -> frozenset[str]:
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) and r in ROLES for r in roles):
        raise Invalid(f"roles must be a non-empty list drawn from {', '.join(sorted(ROLES))}")
    return frozenset(roles)


def user_key(value: object) -> bytes | None:
    checked = inputs.approval_key(value)
    return None if checked is None else bytes.fromhex(checked)


def known_user(state: OrgState, user_id: str) -> User:
    user = state.users.get(user_id) if isinstance(user_id, str) else None
    if user is None:
        raise NotFound(f"no user {user_id!r}")
    return user


class Users:
    def __init__(self, uow: UnitOfWork, ledger: Ledger, governance: Governance, chain_id: int) -> None:
        self.uow = uow
        self.ledger = ledger
        self.governance = governance
        self.chain_id = chain_id

    def authenticate(self, credential_token: str) -> Actor:
        parts = credential_token.split("_") if isinstance(credential_token, str) else []
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[2]) != 64:
            raise Unauthorized("the credential is malformed; expected hbk_<id>_<secret>")
        try:
            secret = bytes.fromhex(parts[2])
        except ValueError:
            raise Unauthorized("the credential is malformed; expected hbk_<id>_<secret>") from None
        with self.uow.read() as s:
            credential = s.get(m.Credential, parts[1][:36])
            expected = credential.secret_hash if credential is not None else "0" * 64
            ok = hmac.compare_digest(hashlib.sha256(secret).hexdigest(), expected)
            if credential is None or not ok or credential.revoked_at is not None:
                raise Unauthorized("unknown or revoked credential")
            if credentials.state(credential, self.uow.clock()) == "expired":
                raise Unauthorized("the credential has expired")
            terms = credentials.of(credential)
            row = s.get(m.User, credential.user_id)
            if row is None:
                raise Unauthorized("unknown or revoked credential")
            state = self.ledger.state(s, row.org_id)
        user = state.users.get(credential.user_id)
        if user is None or user.disabled:
            raise Unauthorized("the credential's user is disabled")
        roles = set(user.roles)
        if "admin" in roles and state.credentials.get(credential.id) != user.id:
            roles.discard("admin")  # admin rights come only with a credential the governance log issued
        if not roles:
            raise Unauthorized("an admin's credential must be issued through the governance log; this one was not")
        return Actor(user.id, state.org, user.name, frozenset(roles), credential.id, terms)

    def organisation(self, actor: Actor) -> dict[str, Any]:
        with self.uow.read() as s:
            organisation = self.uow.get(s, m.Organisation, actor.org_id, actor.org_id, "organisation")
            return views.organisation(organisation, self.chain_id)

    # -- governance changes of users ---------------------------------------------------------------------

    def create_user(
        self, actor: Actor, *, name: str, roles: list[str], approval_key: str | None = None
    ) -> dict[str, Any]:
        """Propose a new user (``user.add``): the id is assigned now, the user exists once the entry lands."""
        require(actor, "admin")
        wanted, key = user_roles(roles), user_key(approval_key)
        name = inputs.name(name, "user name")
        if {"approver", "admin"} & wanted and key is None:
            raise Invalid("approvers and admins sign approvals: give their approval_key")

        def build(state: OrgState) -> list[c.Change]:
            same = name_key(name)
            if any(name_key(u.name) == same for u in state.users.values()):
                raise Conflict(f"a user named {name!r} exists (names compare ignoring case and width)")
            return [c.AddUser(m.new_id(), name, wanted, key)]

        return self.governance.propose(actor, build)

    def set_roles(self, actor: Actor, user_id: str, roles: list[str]) -> dict[str, Any]:
        """Propose new roles for a user (``user.roles``); demoting the last admins of the quorum is refused."""
        require(actor, "admin")
        wanted = user_roles(roles)

        def build(state: OrgState) -> list[c.Change]:
            user = known_user(state, user_id)
            if {"approver", "admin"} & wanted and user.approval_key is None:
                raise Conflict("approvers and admins sign approvals: register the user's approval key first")
            if wanted == user.roles:
                raise Conflict(f"user {user.name} has exactly these roles already")
            return [c.SetRoles(user.id, wanted)]

        return self.governance.propose(actor, build)

    def set_approval_key(self, actor: Actor, user_id: str, approval_key: str | None) -> dict[str, Any]:
        """Propose registering, rotating or removing (None) a user's approval key (``user.key``)."""
        require(actor, "admin")
        key = user_key(approval_key)

        def build(state: OrgState) -> list[c.Change]:
            user = known_user(state, user_id)
            if key is None and {"approver", "admin"} & user.roles:
                raise Invalid("an approver or admin signs approvals: their key can be rotated, not removed")
            if key == user.approval_key:
                raise Conflict(f"user {user.name} has this approval key already")
            return [c.SetKey(user.id, key)]

        return self.governance.propose(actor, build)

    def disable_user(self, actor: Actor, user_id: str) -> dict[str, Any]:
        """Propose disabling a user (``user.disable``): once it lands their credentials die and their unsigned
        withdrawals are cancelled; their recorded approvals stop counting."""
        require(actor, "admin")
        return self.governance.propose(actor, lambda state: [c.DisableUser(known_user(state, user_id).id)])

    def enable_user(self, actor: Actor, user_id: str) -> dict[str, Any]:
        """Propose re-enabling a user (``user.enable``); they need a new credential."""
        require(actor, "admin")
        return self.governance.propose(actor, lambda state: [c.EnableUser(known_user(state, user_id).id)])

    # -- credentials ---------------------------------------------------------------------------------------

    def issue_credential(self, actor: Actor, user_id: str, **terms: Any) -> dict[str, Any]:
        """A credential for a user: at once for a non-admin; for an admin, a ``credential.issue`` proposal.

        The token is returned here, once, either way; an admin's works when the
        entry lands, since only the log's own credentials carry the admin role.
        ``terms`` (``expires_in``, ``scopes``, ``allow``, ``signing_key``) narrow
        it (:func:`harbour.custody.credentials.terms`); an admin's are in the
        governance change, signed with it.
        """
        require(actor, "admin")
        grant = credentials.terms(now=self.uow.clock(), **terms)
        secret, digest = new_secret()
        credential_id = m.new_id()
        with self.uow.read() as s:
            state = self.ledger.state(s, actor.org_id)
        user = known_user(state, user_id)
        if user.disabled:
            raise Conflict(f"user {user.name} is disabled")
        if "admin" in user.roles:

            def build(now: OrgState) -> list[c.Change]:
                return [c.IssueCredential(credential_id, known_user(now, user_id).id, digest, grant)]

            pending = self.governance.propose(actor, build)
            return {"user_id": user.id, "token": token(credential_id, secret), "transaction": pending}

        def work(s: Session) -> dict[str, Any]:
            current = known_user(self.ledger.state(s, actor.org_id), user_id)
            if current.disabled or "admin" in current.roles:
                raise Conflict(f"user {current.name} changed meanwhile; ask again")
            row = m.Credential(id=credential_id, user_id=user.id, secret_hash=digest.hex(), created_at=self.uow.clock())
            credentials.store(row, grant)
            s.add(row)
            s.flush()
            self.uow.event(s, actor, "credential.issued", user.id, credential_id=credential_id)
            return {"user_id": user.id, "token": token(credential_id, secret), "transaction": None}

        return self.uow.write(work)

    def revoke_credential(self, actor: Actor, credential_id: str) -> dict[str, Any]:
        """Revoke one API credential: its owner may; an admin may, unless it is another admin's.

        Only a credential of full scope revokes others: a ``read`` or ``initiate``
        credential (of an admin too) may revoke itself and nothing else, or a
        read-only credential could end everyone's access. One admin revoking the
        others' credentials would lock them out of governance alone; another admin's credential ends with a governance
        change that disables them (or rotates them out of the admin role).
        """
        require(actor, *ANYONE)
        with self.uow.tx() as s:
            credential = s.get(m.Credential, credential_id) if isinstance(credential_id, str) else None
            owner = s.get(m.User, credential.user_id) if credential is not None else None
            if credential is None or owner is None or owner.org_id != actor.org_id:
                raise NotFound(f"no credential {credential_id!r}")
            if credential.id != actor.credential_id and ct.FULL not in actor.terms.scopes:
                raise Forbidden(
                    f"a credential of scopes {', '.join(actor.terms.scopes)} may revoke only itself; "
                    "revoking another needs a credential of full scope"
                )
            if owner.id != actor.user_id:
                if "admin" not in actor.roles:
                    raise Forbidden("only the credential's owner or an admin can revoke it")
                if self.ledger.state(s, actor.org_id).credentials.get(credential.id) == owner.id:
                    raise Conflict(
                        "an admin's credential is revoked by its owner, or ends when a governance change disables "
                        "that admin: one admin alone cannot lock another out"
                    )
            if credential.revoked_at is not None:
                raise Conflict("the credential is revoked already")
            credential.revoked_at = self.uow.clock()
            self.uow.event(s, actor, "credential.revoked", owner.id, credential_id=credential.id)
            return {"credential_id": credential.id, "user_id": owner.id, "revoked": True}

    def list_users(self, actor: Actor, page: Page) -> dict[str, Any]:
        require(actor, *ANYONE)
        with self.uow.read() as s:
            return views.page_document(s, select(m.User).where(m.User.org_id == actor.org_id), m.User, page, views.user)
