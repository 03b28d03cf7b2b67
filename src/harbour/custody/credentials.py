"""A credential's terms as the service takes them, keeps them and shows them (never its secret).

The terms themselves (expiry, scopes, allowed networks, a request-signing key)
are defined once, for the governance log and the service alike, in
:mod:`harbour.governance.credential_terms`. This module checks them as an API
caller sends them (a refusal names the field), copies them onto the stored
row, reads them back when the credential authenticates, and lists credentials
as metadata: id, owner, state, terms, never the secret or its hash.

Who may list: an admin or an auditor any credential of the organisation; anyone
else only their own. A burst of failed authentications against a credential is
recorded in its organisation's audit log (``credential.auth-burst``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbour.custody import inputs
from harbour.custody import models as m
from harbour.custody.actors import ANYONE, Actor, require
from harbour.custody.errors import Forbidden, Invalid
from harbour.custody.uow import UnitOfWork
from harbour.custody.views import Page, iso, page_document
from harbour.governance import credential_terms as ct
from harbour.governance.fields import GovernanceError

MIN_LIFETIME: Final = 60
MAX_LIFETIME: Final = 10 * 366 * 86_400


def terms(
    *,
    now: dt.datetime,
    expires_in: object = None,
    scopes: object = None,
    allow: object = None,
    signing_key: object = None,
) -> ct.CredentialTerms:
    """Terms from a caller's request, in canonical form; Invalid naming the field that is wrong."""
    expires = None
    if expires_in is not None:
        if type(expires_in) is not int or not MIN_LIFETIME <= expires_in <= MAX_LIFETIME:
            raise Invalid(f"expires_in must be a whole number of seconds, {MIN_LIFETIME}..{MAX_LIFETIME}")
        expires = int(now.timestamp()) + expires_in
    wanted: tuple[str, ...] = (ct.FULL,)
    if scopes is not None:
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise Invalid(f"scopes must be a list drawn from {', '.join(ct.SCOPES)}")
        try:
            wanted = ct.scopes(sorted(set(scopes)))
        except GovernanceError as exc:
            raise Invalid(exc.args[-1] if exc.args else "scopes are invalid") from None
    blocks: tuple[str, ...] = ()
    if allow is not None:
        if not isinstance(allow, list) or not 1 <= len(allow) <= ct.MAX_NETWORKS:
            raise Invalid(f"allow must be a list of 1 to {ct.MAX_NETWORKS} CIDR blocks")
        parsed = set()
        for cidr in allow:
            try:
                parsed.add(str(ipaddress.ip_network(cidr, strict=True)))
            except (TypeError, ValueError):
                raise Invalid(f"allow: {cidr!r:.60} is not a CIDR block without host bits (10.0.0.0/8)") from None
        blocks = tuple(sorted(parsed))
    try:
        key = inputs.approval_key(signing_key)  # the same Ed25519 checks as an approval key
    except Invalid as exc:
        raise Invalid(exc.detail.replace("approval_key", "signing_key")) from None
    return ct.CredentialTerms(expires, wanted, blocks, None if key is None else bytes.fromhex(key))


def store(row: m.Credential, grant: ct.CredentialTerms) -> None:
    row.expires_at = None if grant.expires is None else dt.datetime.fromtimestamp(grant.expires, dt.UTC)
    row.scopes = list(grant.scopes)
    row.allow = list(grant.allow)
    row.signing_key = None if grant.signing_key is None else grant.signing_key.hex()


def of(row: m.Credential) -> ct.CredentialTerms:
    """The terms a stored credential was issued on (a row from before terms: none)."""
    return ct.CredentialTerms(
        expires=None if row.expires_at is None else int(row.expires_at.timestamp()),
        scopes=tuple(row.scopes or (ct.FULL,)),
        allow=tuple(row.allow or ()),
        signing_key=None if row.signing_key is None else bytes.fromhex(row.signing_key),
    )


def state(row: m.Credential, now: dt.datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def view(row: m.Credential, now: dt.datetime) -> dict[str, Any]:
    return {
        "id": row.id,
        "user_id": row.user_id,
        "state": state(row, now),
        "created_at": iso(row.created_at),
        "revoked_at": iso(row.revoked_at),
        "expires_at": iso(row.expires_at),
        "scopes": list(row.scopes or (ct.FULL,)),
        "allow": list(row.allow or ()),
        "signing_key": row.signing_key,
    }


class Credentials:
    """Listing credentials: metadata only."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    def list(self, actor: Actor, page: Page, user_id: str | None = None) -> dict[str, Any]:
        require(actor, *ANYONE)
        if not {"admin", "auditor"} & actor.roles and user_id != actor.user_id:
            raise Forbidden("only an admin or an auditor lists credentials other than their own")
        stmt = select(m.Credential).join(m.User, m.User.id == m.Credential.user_id)
        stmt = stmt.where(m.User.org_id == actor.org_id)
        if user_id is not None:
            stmt = stmt.where(m.Credential.user_id == user_id)
        now = self.uow.clock()
        with self.uow.read() as s:
            return page_document(s, stmt, m.Credential, page, lambda row: view(row, now))

    def record_burst(self, credential_id: str, address: str) -> None:
        """``credential.auth-burst`` in the owner's organisation's audit log: someone is guessing its secret.

        Nothing is recorded for an id no credential has (it names no organisation).
        """

        def work(s: Session) -> None:
            credential = s.get(m.Credential, credential_id)
            owner = s.get(m.User, credential.user_id) if credential is not None else None
            if credential is not None and owner is not None:
                self.uow.event(
                    s, None, "credential.auth-burst", credential.id, org_id=owner.org_id, address=address[:64]
                )

        self.uow.write(work)
