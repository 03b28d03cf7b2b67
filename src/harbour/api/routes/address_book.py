"""``/v1/address-book``: named destinations, whitelisted or not, that the policy can refer to."""

from __future__ import annotations

from harbour.api import schemas
from harbour.api.interface import Json
from harbour.api.params import Paging
from harbour.api.routing import PAGE_DOC, Actor, Custody, resource_router, returns
from harbour.custody import shapes

router = resource_router("address book")


@router.post("/address-book", summary="Add an address-book entry", **returns(shapes.AddressBookEntry, 201))
def add_address_book_entry(custody: Custody, actor: Actor, body: schemas.AddAddressBookEntry) -> Json:
    return custody.add_address_book_entry(actor, name=body.name, address=body.address, whitelisted=body.whitelisted)


@router.get("/address-book", summary="List the address book", description=PAGE_DOC, **returns(shapes.AddressBookPage))
def list_address_book(custody: Custody, actor: Actor, page: Paging) -> Json:
    return custody.list_address_book(actor, page)
