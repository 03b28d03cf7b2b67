"""What an asset is to custody: the chain's native coin, or an ERC-20 token at one contract.

This is the one module that tells the two apart: how a registered asset is
checked, how its balance is read, and which chain transfers are deposits of it.
The withdrawal code, the pipeline and the transaction kinds work from an
:class:`AssetRef` and never ask which of the two they hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from harbour.chains import tokeninfo
from harbour.chains.rpcvalues import ChainError
from harbour.custody import models as m
from harbour.custody.errors import Conflict, Invalid, Unavailable

if TYPE_CHECKING:
    from harbour.chains.evm import EvmClient, Transfer

NATIVE: Final = "native"
ERC20: Final = "erc20"
KINDS: Final = (NATIVE, ERC20)
NATIVE_DECIMALS: Final = 18


@dataclass(frozen=True)
class AssetRef:
    """A registered asset's identity, detached from its row (so it can cross threads and transactions)."""

    id: str
    symbol: str
    kind: str
    contract: str | None

    @classmethod
    def of(cls, row: m.Asset) -> AssetRef:
        return cls(id=row.id, symbol=row.symbol, kind=row.kind, contract=row.contract)

    @property
    def native(self) -> bool:
        return self.kind == NATIVE

    @property
    def token(self) -> str | None:
        """The ERC-20 contract whose balance is this asset, or None for the native coin."""
        return None if self.native else self.contract


def check_definition(kind: object, contract: str | None, decimals: object) -> None:
    """Invalid unless ``kind``, ``contract`` and ``decimals`` describe an asset that can be registered."""
    if kind not in KINDS:
        raise Invalid("kind must be native or erc20")
    if (kind == ERC20) != (contract is not None):
        raise Invalid("an erc20 asset names its contract; the native asset has none")
    if type(decimals) is not int or not 0 <= decimals <= 36:
        raise Invalid("decimals must be an integer in 0..36")
    if kind == NATIVE and decimals != NATIVE_DECIMALS:
        raise Invalid("ETH has 18 decimals")


def check_token(chain: EvmClient, contract: str, symbol: str, decimals: int) -> None:
    """Invalid unless ``contract`` answers as the ERC-20 token declared: code, symbol, decimals, balanceOf.

    An asset whose contract is not a token would make every balance read of it
    fail, and the log cannot forget an asset: so it is refused before any admin
    is asked to sign it (:mod:`harbour.chains.tokeninfo`).
    """
    try:
        token = tokeninfo.read_token(chain, contract)
    except tokeninfo.NotAToken as exc:
        raise Conflict(f"contract: not an ERC-20 token: {exc}") from None
    except ChainError as exc:
        raise Unavailable(f"the chain could not be asked about {contract}: {exc}") from exc
    if token.decimals != decimals:
        raise Conflict(f"decimals: {contract} has {token.decimals} decimals, not the {decimals} declared")
    if token.symbol.upper() != symbol:
        raise Conflict(f"symbol: {contract} is {token.symbol!r}, not the {symbol!r} declared")


def balance(chain: EvmClient, asset: AssetRef, address: str, block: int | str = "latest") -> int:
    """What ``address`` holds of ``asset`` at ``block`` (wei for the native coin, base units for a token)."""
    token = asset.token
    if token is None:
        return chain.balance(address, block)
    return chain.token_balance(token, address, block)


def receives(asset: AssetRef, transfer: Transfer) -> bool:
    """Whether ``transfer`` (found by the deposit scanner) moved ``asset``."""
    return asset.native if transfer.kind == "eth" else asset.contract == transfer.token
