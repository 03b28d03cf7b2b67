"""Users, vaults, assets and address-book entries by name: what an operator types, turned into the API's ids.

Every custody command that takes one of these takes its id or its name. The
names are unique in an organisation (the governance log refuses a second user,
vault or address-book entry whose :func:`~harbour.util.text.name_key` is taken,
and a second asset with a symbol), so a name names one thing, compared as the
log compares them: ``Treasury``, ``treasury`` and ``treasury `` are one vault.

Resolution happens here, in the client, from the list endpoints every role may
read: the API keeps one way to name a resource (its id, in the path), and what a
command sends is what it would have sent had the operator typed the id. An id
(a UUID) is taken as it is, with no request (ids come first: a name that looks
like an id never hides the thing whose id it is); anything else must be the name
of exactly one thing, or the command stops with exit code 2 and the names there
are (``no vault named 'x'; vaults: a, b``).

:class:`Directory` also goes the other way for listings: the name beside an id.
Each list is read once per command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from harbour.cli.apiclient import MAX_LIMIT, ApiError, Client
from harbour.cli.params import InputError
from harbour.util.text import name_key

_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SHOWN: Final = 20
"""Names listed in an error at most (an organisation may have thousands of users)."""


@dataclass(frozen=True)
class Kind:
    noun: str
    plural: str
    path: str
    label: str
    """The field that holds the name: ``name``, or an asset's ``symbol``."""


USER: Final = Kind("user", "users", "/v1/users", "name")
VAULT: Final = Kind("vault", "vaults", "/v1/vaults", "name")
ASSET: Final = Kind("asset", "assets", "/v1/assets", "symbol")
ENTRY: Final = Kind("address-book entry", "address-book entries", "/v1/address-book", "name")


def is_id(value: str) -> bool:
    return _UUID.fullmatch(value.strip().lower()) is not None


class Directory:
    """The organisation's names as one client sees them, each list read at most once."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._items: dict[str, list[dict[str, Any]]] = {}

    def items(self, kind: Kind) -> list[dict[str, Any]]:
        if kind.path not in self._items:
            page = self.client.pages(kind.path, MAX_LIMIT, None, True)
            self._items[kind.path] = [item for item in page["items"] if isinstance(item, dict)]
        return self._items[kind.path]

    def resolve(self, kind: Kind, value: str, what: str) -> str:
        """The id of the ``kind`` that ``value`` names (its id or its name); InputError (exit 2) if none does."""
        text = value.strip()
        if not text:
            raise InputError(f"{what}: give the {kind.noun}'s name or id")
        if is_id(text):
            return text.lower()
        key = name_key(text)
        named = [item for item in self.items(kind) if name_key(str(item.get(kind.label, ""))) == key]
        if len(named) == 1:
            return str(named[0]["id"])
        if named:  # the log keeps names unique; a server that does not is not guessed for
            ids = ", ".join(str(item.get("id")) for item in named)
            raise InputError(f"{what}: {len(named)} {kind.plural} are named {text!r} ({ids}); give the id")
        raise InputError(f"{what}: no {kind.noun} named {text!r}; {self.known(kind)}")

    def known(self, kind: Kind) -> str:
        names = sorted(str(item.get(kind.label)) for item in self.items(kind))
        if not names:
            return f"there are no {kind.plural}"
        more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
        return f"{kind.plural}: {', '.join(names[:SHOWN])}{more}"

    def names(self, kind: Kind) -> dict[str, str]:
        """Id -> name of every ``kind`` this credential may list ({} if it may not: the ids are shown then)."""
        try:
            return {str(item.get("id")): str(item.get(kind.label)) for item in self.items(kind)}
        except ApiError:
            return {}


def resolve(client: Client, kind: Kind, value: str, what: str) -> str:
    """One lookup, for the commands that name one thing."""
    return Directory(client).resolve(kind, value, what)


def named(page: dict[str, Any], directory: Directory, kind: Kind, id_field: str, name_field: str) -> None:
    """Put the name of each item's ``id_field`` beside it as ``name_field`` (a table's column; the id if unknown)."""
    names = directory.names(kind)
    for item in page.get("items") or []:
        if isinstance(item, dict) and item.get(id_field) is not None:
            ident = str(item[id_field])
            item[name_field] = names.get(ident, ident)
