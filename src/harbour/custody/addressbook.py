"""The address book: named destinations, whitelisted or not, that the policy matches withdrawals on.

Whether a destination is in the book, and whether it is whitelisted, decides
which rule applies to a withdrawal, so each change to the book is a governance
entry (``address.add``, ``address.whitelist``, ``address.remove``) that the
admin quorum signs. A removed entry stays listed nowhere but keeps its row, so
the withdrawals that named it still do.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from harbour.custody import inputs, views
from harbour.custody import models as m
from harbour.custody.actors import ANYONE, Actor, require
from harbour.custody.errors import Conflict, Invalid, NotFound
from harbour.custody.governance import Governance
from harbour.custody.uow import UnitOfWork
from harbour.custody.views import Page
from harbour.governance import changes as c
from harbour.governance.state import AddressEntry, OrgState
from harbour.util.text import name_key


def _entry(state: OrgState, entry_id: str) -> AddressEntry:
    entry = state.address_book.get(entry_id) if isinstance(entry_id, str) else None
    if entry is None:
        raise NotFound(f"no address-book entry {entry_id!r}")
    return entry


def _flag(value: object) -> bool:
    if type(value) is not bool:
        raise Invalid("whitelisted must be true or false")
    return value


class AddressBook:
    def __init__(self, uow: UnitOfWork, governance: Governance) -> None:
        self.uow = uow
        self.governance = governance

    def add(self, actor: Actor, *, name: str, address: str, whitelisted: bool = False) -> dict[str, Any]:
        """Propose a new entry (``address.add``); the id is assigned now."""
        require(actor, "admin")
        name = inputs.name(name, "entry name")
        checked, listed = inputs.destination(address, "address"), _flag(whitelisted)
        with self.uow.read() as s:
            own = s.scalar(
                select(m.Vault.name)
                .join(m.Address, m.Address.vault_id == m.Vault.id)
                .where(m.Vault.org_id == actor.org_id, m.Address.address == checked)
            )
        if own is not None:
            raise Conflict(
                f"{checked} is an address of the organisation's vault {own!r}: the address book names "
                "destinations outside the organisation"
            )

        def build(state: OrgState) -> list[c.Change]:
            if state.entry_for(checked) is not None:
                raise Conflict(f"{checked} is in the address book already")
            key = name_key(name)
            if any(name_key(e.name) == key for e in state.address_book.values()):
                raise Conflict(f"an address-book entry is named {name!r} already (names compare ignoring case)")
            return [c.AddAddress(m.new_id(), name, checked, listed)]

        return self.governance.propose(actor, build)

    def whitelist(self, actor: Actor, entry_id: str, whitelisted: bool) -> dict[str, Any]:
        """Propose whitelisting an entry, or taking it off the whitelist (``address.whitelist``)."""
        require(actor, "admin")
        listed = _flag(whitelisted)

        def build(state: OrgState) -> list[c.Change]:
            entry = _entry(state, entry_id)
            if entry.whitelisted == listed:
                raise Conflict(f"entry {entry.name!r} is {'already' if listed else 'not'} whitelisted")
            return [c.SetWhitelisted(entry.id, listed)]

        return self.governance.propose(actor, build)

    def remove(self, actor: Actor, entry_id: str) -> dict[str, Any]:
        """Propose removing an entry (``address.remove``)."""
        require(actor, "admin")
        return self.governance.propose(actor, lambda state: [c.RemoveAddress(_entry(state, entry_id).id)])

    def list(self, actor: Actor, page: Page) -> dict[str, Any]:
        require(actor, *ANYONE)
        with self.uow.read() as s:
            stmt = select(m.AddressBookEntry).where(
                m.AddressBookEntry.org_id == actor.org_id, m.AddressBookEntry.removed_at.is_(None)
            )
            return views.page_document(s, stmt, m.AddressBookEntry, page, views.address_book_entry)
