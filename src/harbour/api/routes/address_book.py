"""``/v1/address-book``: named destinations, whitelisted or not, that the policy can refer to.

Every change to the book is a governance change (202, signed by the proposer
and the admin quorum), since it decides which rule a withdrawal meets.
"""

from __future__ import annotations

from harbour.api import schemas
from harbour.api.interface import Json
from harbour.api.params import EntryId, Paging
from harbour.api.routing import PAGE_DOC, PENDING, Actor, Custody, resource_router, returns
from harbour.custody import shapes

router = resource_router("address book")


@router.post(
    "/address-book",
    summary="Propose an address-book entry",
    description=PENDING,
    **returns(shapes.GovernanceTransaction, 202),
)
def add_address_book_entry(custody: Custody, actor: Actor, body: schemas.AddAddressBookEntry) -> Json:
    return custody.add_address_book_entry(actor, name=body.name, address=body.address, whitelisted=body.whitelisted)


@router.get("/address-book", summary="List the address book", description=PAGE_DOC, **returns(shapes.AddressBookPage))
def list_address_book(custody: Custody, actor: Actor, page: Paging) -> Json:
    return custody.list_address_book(actor, page)


@router.post(
    "/address-book/{entry_id}/whitelist",
    summary="Propose whitelisting an entry (or taking it off the whitelist)",
    description=PENDING,
    **returns(shapes.GovernanceTransaction, 202),
)
def set_whitelisted(custody: Custody, actor: Actor, entry_id: EntryId, body: schemas.Whitelist) -> Json:
    return custody.set_whitelisted(actor, entry_id, whitelisted=body.whitelisted)


@router.post(
    "/address-book/{entry_id}/remove",
    summary="Propose removing an entry",
    description=PENDING,
    **returns(shapes.GovernanceTransaction, 202),
)
def remove_address_book_entry(custody: Custody, actor: Actor, entry_id: EntryId) -> Json:
    return custody.remove_address_book_entry(actor, entry_id)


@router.patch(
    "/address-book/{entry_id}",
    summary="Propose renaming an entry or changing its whitelisting",
    description=PENDING + " `name` renames it (`address.rename`), `whitelisted` sets it (`address.whitelist`).",
    **returns(shapes.GovernanceTransaction, 202),
)
def update_address_book_entry(
    custody: Custody, actor: Actor, entry_id: EntryId, body: schemas.UpdateAddressBookEntry
) -> Json:
    return custody.update_address_book_entry(actor, entry_id, **body.given())


@router.delete(
    "/address-book/{entry_id}",
    summary="Propose removing an entry",
    description=PENDING + " The same change as `POST /v1/address-book/{entry_id}/remove`.",
    **returns(shapes.GovernanceTransaction, 202),
)
def delete_address_book_entry(custody: Custody, actor: Actor, entry_id: EntryId) -> Json:
    return custody.remove_address_book_entry(actor, entry_id)
