"""Organisations, their users and the API credentials users authenticate with.

A credential is ``hbk_<id>_<secret>``: the service stores only the secret's
SHA-256, so a copy of the database does not let anyone in, and compares it in
constant time. An organisation starts with :meth:`Users.bootstrap`, run by
whoever holds the database (never through the API); every later user is
created by an admin, and approvers and admins register the Ed25519 key their
approvals are signed with.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from harbour.custody import inputs, views
from harbour.custody import models as m
from harbour.custody.actors import ANYONE, ROLES, Actor, require
from harbour.custody.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from harbour.custody.uow import UnitOfWork
from harbour.custody.views import Page
from harbour.governance import policy as pol

TOKEN_PREFIX: Final = "hbk"  # noqa: S105 (a prefix, not a secret)


class Users:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    def _new_token(self, s: Session, user_id: str) -> str:
        secret = secrets.token_bytes(32)
        credential = m.Credential(user_id=user_id, secret_hash=hashlib.sha256(secret).hexdigest())
        s.add(credential)
        s.flush()
        return f"{TOKEN_PREFIX}_{credential.id}_{secret.hex()}"

    def bootstrap(
        self, org: str, admin: str, approval_key: str | None = None, policy: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A new organisation with its first admin and its initial policy (default: deny everything).

        Not reachable through the API: whoever runs it holds the service's
        database, and it is where trust in an organisation starts.
        """
        document = pol.Policy.from_document(policy if policy is not None else {"rules": []})
        key = inputs.approval_key(approval_key)
        with self.uow.tx() as s:
            if s.scalar(select(m.Organisation).where(m.Organisation.name == inputs.name(org, "organisation"))):
                raise Conflict(f"organisation {org!r} exists")
            organisation = m.Organisation(name=org)
            s.add(organisation)
            s.flush()
            user = m.User(
                org_id=organisation.id, name=inputs.name(admin, "user name"), roles=["admin"], approval_key=key
            )
            s.add(user)
            s.flush()
            token = self._new_token(s, user.id)
            s.add(
                m.Policy(org_id=organisation.id, version=1, document=document.to_document(), digest=document.digest())
            )
            actor = Actor(user.id, organisation.id, user.name, frozenset(user.roles))
            self.uow.event(s, actor, "organisation.created", organisation.id, name=org)
            self.uow.event(s, actor, "user.created", user.id, name=admin, roles=["admin"], approval_key=key)
            self.uow.event(s, actor, "policy.activated", organisation.id, version=1, digest=document.digest())
            return {"organisation": views.organisation(organisation), "user": views.user(user), "token": token}

    def authenticate(self, token: str) -> Actor:
        parts = token.split("_") if isinstance(token, str) else []
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
            user = s.get(m.User, credential.user_id)
            if user is None or user.disabled:
                raise Unauthorized("the credential's user is disabled")
            return Actor(user.id, user.org_id, user.name, frozenset(user.roles))

    def organisation(self, actor: Actor) -> dict[str, Any]:
        with self.uow.read() as s:
            return views.organisation(self.uow.get(s, m.Organisation, actor.org_id, actor.org_id, "organisation"))

    def create_user(
        self, actor: Actor, *, name: str, roles: list[str], approval_key: str | None = None
    ) -> dict[str, Any]:
        require(actor, "admin")
        if not isinstance(roles, list) or not roles or not all(isinstance(r, str) and r in ROLES for r in roles):
            raise Invalid(f"roles must be a non-empty list drawn from {', '.join(sorted(ROLES))}")
        key = inputs.approval_key(approval_key)
        if {"approver", "admin"} & set(roles) and key is None:
            raise Invalid("approvers and admins sign approvals: give their approval_key")
        with self.uow.tx() as s:
            user = m.User(
                org_id=actor.org_id, name=inputs.name(name, "user name"), roles=sorted(set(roles)), approval_key=key
            )
            s.add(user)
            try:
                s.flush()
            except IntegrityError:
                raise Conflict(f"a user named {name!r} or with that approval key exists") from None
            self.uow.event(s, actor, "user.created", user.id, name=name, roles=user.roles, approval_key=key)
            return views.user(user)

    def issue_credential(self, actor: Actor, user_id: str) -> dict[str, Any]:
        require(actor, "admin")
        with self.uow.tx() as s:
            user = self.uow.get(s, m.User, user_id, actor.org_id, "user")
            if user.disabled:
                raise Conflict(f"user {user.name} is disabled")
            token = self._new_token(s, user.id)
            self.uow.event(s, actor, "credential.issued", user.id, credential_id=token.split("_")[1])
            return {"user_id": user.id, "token": token}

    def disable_user(self, actor: Actor, user_id: str) -> dict[str, Any]:
        """Disable a user and revoke every credential they hold; their recorded approvals stay as they were."""
        require(actor, "admin")
        if user_id == actor.user_id:
            raise Conflict("an admin cannot disable themselves; another admin must")
        with self.uow.tx() as s:
            user = self.uow.get(s, m.User, user_id, actor.org_id, "user")
            s.refresh(user, with_for_update=True)
            if user.disabled:
                raise Conflict(f"user {user.name} is disabled already")
            user.disabled = True
            now = self.uow.clock()
            revoked = 0
            for credential in s.scalars(
                select(m.Credential).where(m.Credential.user_id == user.id, m.Credential.revoked_at.is_(None))
            ):
                credential.revoked_at = now
                revoked += 1
            self.uow.event(s, actor, "user.disabled", user.id, credentials_revoked=revoked)
            return views.user(user)

    def revoke_credential(self, actor: Actor, credential_id: str) -> dict[str, Any]:
        """Revoke one API credential: its owner may, and so may an admin of the organisation."""
        require(actor, *ANYONE)
        with self.uow.tx() as s:
            credential = s.get(m.Credential, credential_id) if isinstance(credential_id, str) else None
            owner = s.get(m.User, credential.user_id) if credential is not None else None
            if credential is None or owner is None or owner.org_id != actor.org_id:
                raise NotFound(f"no credential {credential_id!r}")
            if owner.id != actor.user_id and "admin" not in actor.roles:
                raise Forbidden("only the credential's owner or an admin can revoke it")
            if credential.revoked_at is not None:
                raise Conflict("the credential is revoked already")
            credential.revoked_at = self.uow.clock()
            self.uow.event(s, actor, "credential.revoked", owner.id, credential_id=credential.id)
            return {"credential_id": credential.id, "user_id": owner.id, "revoked": True}

    def list_users(self, actor: Actor, page: Page) -> dict[str, Any]:
        require(actor, *ANYONE)
        with self.uow.read() as s:
            return views.page_document(s, select(m.User).where(m.User.org_id == actor.org_id), m.User, page, views.user)
