"""Changes that amend what an earlier change made: rename or archive a vault, disable an asset, rename an entry.

Each is a governance change like any other (:mod:`harbour.governance.changes`
lists them in its :data:`~harbour.governance.changes.Change` union and decodes
them through :data:`DECODERS`), signed by the admin quorum and replayed by every
signer node. They never delete: an archived vault keeps its key, its addresses
and its history, and deposits to it are still credited; a disabled asset stays
registered and its balances stay readable. What they take away is new use:

- ``vault.archive``: the vault takes no new withdrawal (every node refuses to
  sign one, :func:`harbour.governance.decide.withdrawal_facts`) and no new address;
- ``asset.disable``: no withdrawal of the asset is signed until ``asset.enable``;
- ``vault.rename`` and ``address.rename``: only the name people and the policy's
  reports read changes; the vault's key and the entry's address stay.

Users' roles, approval keys and disabling are :mod:`~harbour.governance.changes`'
own ``user.*`` changes, and an address-book entry's whitelisting and removal are
its ``address.whitelist`` and ``address.remove``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from harbour.governance import fields as f

Exact = Callable[..., dict[str, Any]]
"""Returns the change's map if it has exactly these keys (GovernanceError("malformed") otherwise)."""


@dataclass(frozen=True)
class RenameVault:
    id: str
    name: str
    op: ClassVar[str] = "vault.rename"

    def fields(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


@dataclass(frozen=True)
class ArchiveVault:
    """The vault takes no new withdrawal or address; its history stays and deposits to it are still credited."""

    id: str
    op: ClassVar[str] = "vault.archive"

    def fields(self) -> dict[str, Any]:
        return {"id": self.id}


@dataclass(frozen=True)
class DisableAsset:
    """No withdrawal of the asset is signed until it is enabled again; it stays registered and shown."""

    id: str
    op: ClassVar[str] = "asset.disable"

    def fields(self) -> dict[str, Any]:
        return {"id": self.id}


@dataclass(frozen=True)
class EnableAsset:
    id: str
    op: ClassVar[str] = "asset.enable"

    def fields(self) -> dict[str, Any]:
        return {"id": self.id}


@dataclass(frozen=True)
class RenameAddress:
    """A new name for an address-book entry; its address and whitelisting stay."""

    id: str
    name: str
    op: ClassVar[str] = "address.rename"

    def fields(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


Amendment = RenameVault | ArchiveVault | DisableAsset | EnableAsset | RenameAddress


def _rename_vault(exact: Exact) -> Amendment:
    v = exact("id", "name")
    return RenameVault(f.text("vault id", v["id"]), f.name("vault name", v["name"]))


def _rename_address(exact: Exact) -> Amendment:
    v = exact("id", "name")
    return RenameAddress(f.text("entry id", v["id"]), f.name("entry name", v["name"]))


DECODERS: Final[dict[str, Callable[[Exact], Amendment]]] = {
    RenameVault.op: _rename_vault,
    ArchiveVault.op: lambda exact: ArchiveVault(f.text("vault id", exact("id")["id"])),
    DisableAsset.op: lambda exact: DisableAsset(f.text("asset id", exact("id")["id"])),
    EnableAsset.op: lambda exact: EnableAsset(f.text("asset id", exact("id")["id"])),
    RenameAddress.op: _rename_address,
}
"""Each amendment's decoder, by ``op``: it takes the change's exact-keys reader and checks every field."""


def describe(change: Amendment) -> str:
    """One line an admin reads before signing."""
    if isinstance(change, RenameVault):
        return f"vault {change.id} is renamed {change.name!r}"
    if isinstance(change, ArchiveVault):
        return (
            f"archive vault {change.id}: it takes no new withdrawal or address "
            "(its history stays, deposits are still credited)"
        )
    if isinstance(change, DisableAsset):
        return f"disable asset {change.id}: no withdrawal of it is signed until it is enabled again"
    if isinstance(change, EnableAsset):
        return f"re-enable asset {change.id}: withdrawals of it may be signed again"
    return f"address-book entry {change.id} is renamed {change.name!r}"
