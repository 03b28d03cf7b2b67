"""Changing what the governance log made: users, vaults, assets and address-book entries, each as one proposal.

``PATCH`` and ``DELETE`` of these resources come here. Every field a request
changes becomes one governance change (:mod:`harbour.governance.changes`,
:mod:`harbour.governance.amendments`), and all of one request's changes go in
one entry, so the admin quorum signs them together and they land together or
not at all. A field equal to what is in force changes nothing and is left out;
a request that would change nothing is a conflict, not an empty entry. Nothing
is deleted: ``DELETE`` disables a user, archives a vault, disables an asset or
removes an address-book entry, and each keeps the history that names it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, Final

from harbour.custody import inputs
from harbour.custody.actors import Actor, require
from harbour.custody.errors import Conflict, Invalid, NotFound
from harbour.custody.governance import Governance
from harbour.custody.users import known_user, user_key, user_roles
from harbour.governance import amendments as am
from harbour.governance import changes as c
from harbour.governance.state import Asset, OrgState, Vault
from harbour.util.text import name_key

SIGNERS: Final = frozenset({"approver", "admin"})
"""Roles whose holders sign approvals, so they need an approval key."""


class Unset(enum.Enum):
    """A field a ``PATCH`` left out (``None`` is a value: an approval key removed)."""

    UNSET = "unset"


UNSET: Final = Unset.UNSET


def _changed(changes: Sequence[c.Change], what: str) -> list[c.Change]:
    if not changes:
        raise Conflict(f"{what} is exactly so already: the request changes nothing")
    return list(changes)


def _vault(state: OrgState, vault_id: str) -> Vault:
    vault = state.vaults.get(vault_id) if isinstance(vault_id, str) else None
    if vault is None:
        raise NotFound(f"no vault {vault_id!r}")
    return vault


def _asset(state: OrgState, asset_id: str) -> Asset:
    asset = state.assets.get(asset_id) if isinstance(asset_id, str) else None
    if asset is None:
        raise NotFound(f"no asset {asset_id!r}")
    return asset


def _flag(value: object, name: str) -> bool:
    if type(value) is not bool:
        raise Invalid(f"{name} must be true or false")
    return value


class Amend:
    def __init__(self, governance: Governance) -> None:
        self.governance = governance

    def user(
        self,
        actor: Actor,
        user_id: str,
        *,
        roles: list[str] | Unset = UNSET,
        approval_key: str | Unset | None = UNSET,
        disabled: bool | Unset = UNSET,
    ) -> dict[str, Any]:
        """Propose new roles, a new (or no) approval key, disabling or re-enabling, in one entry.

        The key changes before the roles, so one request can make a viewer an
        approver with the key they will approve with.
        """
        require(actor, "admin")
        wanted = None if roles is UNSET else user_roles(roles)
        key = UNSET if approval_key is UNSET else user_key(approval_key)
        off = None if disabled is UNSET else _flag(disabled, "disabled")

        def build(state: OrgState) -> list[c.Change]:
            user = known_user(state, user_id)
            out: list[c.Change] = []
            now_key = user.approval_key if key is UNSET else key
            now_roles = user.roles if wanted is None else wanted
            if now_roles & SIGNERS and now_key is None:
                raise Conflict("approvers and admins sign approvals: they keep an approval key")
            if key is not UNSET and key != user.approval_key:
                out.append(c.SetKey(user.id, key))
            if wanted is not None and wanted != user.roles:
                out.append(c.SetRoles(user.id, wanted))
            if off is not None and off != user.disabled:
                out.append(c.DisableUser(user.id) if off else c.EnableUser(user.id))
            return _changed(out, f"user {user.name}")

        return self.governance.propose(actor, build)

    def vault(
        self, actor: Actor, vault_id: str, *, name: str | Unset = UNSET, archived: bool | Unset = UNSET
    ) -> dict[str, Any]:
        """Propose renaming a vault, archiving it, or both; an archived vault is not brought back."""
        require(actor, "admin")
        if name is not UNSET:
            name = inputs.name(name, "vault name")
        archive = None if archived is UNSET else _flag(archived, "archived")

        def build(state: OrgState) -> list[c.Change]:
            vault = _vault(state, vault_id)
            out: list[c.Change] = []
            if name is not UNSET and name != vault.name:
                if any(name_key(v.name) == name_key(name) and v.id != vault.id for v in state.vaults.values()):
                    raise Conflict(f"a vault is named {name!r} already (names compare ignoring case and width)")
                out.append(am.RenameVault(vault.id, name))
            if archive is False and vault.archived:
                raise Conflict(f"vault {vault.name!r} is archived, and an archived vault is not brought back")
            if archive and not vault.archived:
                out.append(am.ArchiveVault(vault.id))
            return _changed(out, f"vault {vault.name!r}")

        return self.governance.propose(actor, build)

    def asset(self, actor: Actor, asset_id: str, *, disabled: bool) -> dict[str, Any]:
        """Propose disabling an asset (no withdrawal of it is signed) or enabling it again."""
        require(actor, "admin")
        off = _flag(disabled, "disabled")

        def build(state: OrgState) -> list[c.Change]:
            asset = _asset(state, asset_id)
            if asset.disabled == off:
                return _changed([], f"asset {asset.symbol}")
            return [am.DisableAsset(asset.id) if off else am.EnableAsset(asset.id)]

        return self.governance.propose(actor, build)

    def address_book_entry(
        self, actor: Actor, entry_id: str, *, name: str | Unset = UNSET, whitelisted: bool | Unset = UNSET
    ) -> dict[str, Any]:
        """Propose renaming an entry, whitelisting it or taking it off the whitelist, in one entry."""
        require(actor, "admin")
        if name is not UNSET:
            name = inputs.name(name, "entry name")
        listed = None if whitelisted is UNSET else _flag(whitelisted, "whitelisted")

        def build(state: OrgState) -> list[c.Change]:
            entry = state.address_book.get(entry_id) if isinstance(entry_id, str) else None
            if entry is None:
                raise NotFound(f"no address-book entry {entry_id!r}")
            out: list[c.Change] = []
            if name is not UNSET and name != entry.name:
                if any(name_key(e.name) == name_key(name) and e.id != entry.id for e in state.address_book.values()):
                    raise Conflict(f"an address-book entry is named {name!r} already (names compare ignoring case)")
                out.append(am.RenameAddress(entry.id, name))
            if listed is not None and listed != entry.whitelisted:
                out.append(c.SetWhitelisted(entry.id, listed))
            return _changed(out, f"entry {entry.name!r}")

        return self.governance.propose(actor, build)
