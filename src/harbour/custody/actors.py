"""Who is calling: the authenticated actor and the one check of their roles.

Every service method starts from an :class:`Actor` the API or the CLI got from
:meth:`harbour.custody.users.Users.authenticate`, and refuses with
:class:`~harbour.custody.errors.Forbidden` before it reads anything when the
actor holds none of the roles the operation needs. Kept apart so that each
domain module checks roles the same way and none imports another for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from harbour.custody.errors import Forbidden
from harbour.governance.credential_terms import NO_TERMS, CredentialTerms

ROLES: Final = frozenset({"admin", "initiator", "approver", "auditor", "viewer"})
ANYONE: Final = ROLES


@dataclass(frozen=True)
class Actor:
    user_id: str
    org_id: str
    name: str
    roles: frozenset[str]
    credential_id: str | None = None
    """The API credential the caller authenticated with (None: the service itself, or a test)."""
    terms: CredentialTerms = NO_TERMS
    """That credential's terms, which the API enforces on each request (scopes, networks, signature)."""


def require(actor: Actor, *roles: str) -> None:
    """Forbidden unless ``actor`` holds at least one of ``roles``."""
    if not actor.roles & set(roles):
        held = ", ".join(sorted(actor.roles)) or "none"
        raise Forbidden(f"this needs one of the roles {', '.join(sorted(roles))}; {actor.name} has {held}")
