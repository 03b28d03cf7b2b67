"""What a contract says it is, as an ERC-20 token: its code, ``symbol()``, ``decimals()`` and ``balanceOf``.

An asset whose contract is not a token cannot have its balance read, so every
view of its holders would fail; registering one is the mistake to refuse. So
before an asset is proposed, :func:`read_token` checks the contract the way its
balance will be read: there is code at the address (``eth_getCode``), and
``decimals()``, ``symbol()`` and ``balanceOf(address)`` answer as EIP-20 says,
with values a registry can hold. ``symbol()`` is accepted as an ABI string or as
the ``bytes32`` some early tokens return. Nothing here trusts the answers beyond
their form: a contract can lie about its symbol, which is why an admin declares
it and the quorum signs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from harbour.chains.ethereum import checksum_address, keccak256
from harbour.chains.rpcvalues import ChainError, block_param, caller_address, node_bytes

if TYPE_CHECKING:
    from harbour.chains.evm import EvmClient

DECIMALS_SELECTOR: Final = keccak256(b"decimals()")[:4]
SYMBOL_SELECTOR: Final = keccak256(b"symbol()")[:4]
BALANCE_OF_SELECTOR: Final = keccak256(b"balanceOf(address)")[:4]
MAX_DECIMALS: Final = 36
MAX_SYMBOL_LEN: Final = 32
WORD: Final = 32


class NotAToken(ValueError):
    """The contract does not answer as an ERC-20 token; the message says which call failed and how."""


@dataclass(frozen=True)
class TokenInfo:
    contract: str
    symbol: str
    decimals: int


def read_token(chain: EvmClient, contract: str, block: int | str = "latest") -> TokenInfo:
    """The token at ``contract``, or NotAToken; a chain that does not answer raises ChainError (from getCode)."""
    target = checksum_address(caller_address(contract, "contract"))
    code = node_bytes(chain.request("eth_getCode", [target, block_param(block)]), "contract code")
    if not code:
        raise NotAToken(f"{target} has no code: it is not a contract (an account, or not deployed on this chain)")
    decimals_word = _call(chain, target, DECIMALS_SELECTOR, "decimals()", block)
    if len(decimals_word) != WORD or int.from_bytes(decimals_word, "big") > MAX_DECIMALS:
        raise NotAToken(f"{target} answered decimals() with {decimals_word.hex()[:80]!r}, not a uint8 in 0..36")
    symbol = _symbol(target, _call(chain, target, SYMBOL_SELECTOR, "symbol()", block))
    balance = _call(chain, target, BALANCE_OF_SELECTOR + bytes(WORD), "balanceOf(address)", block)
    if len(balance) != WORD:
        raise NotAToken(f"{target} answered balanceOf(address) with {len(balance)} bytes, not one uint256")
    return TokenInfo(target, symbol, int.from_bytes(decimals_word, "big"))


def _call(chain: EvmClient, target: str, data: bytes, what: str, block: int | str) -> bytes:
    try:
        return chain.call(target, data, block)
    except ChainError as exc:
        raise NotAToken(f"{target} does not answer {what}: {exc}") from None


def _symbol(target: str, answer: bytes) -> str:
    """An ABI-encoded ``string``, or a ``bytes32`` padded with zero bytes; printable ASCII either way."""
    if len(answer) == WORD:
        raw = answer.rstrip(b"\0")
    elif len(answer) >= 2 * WORD and int.from_bytes(answer[:WORD], "big") == WORD:
        length = int.from_bytes(answer[WORD : 2 * WORD], "big")
        padded = -(-length // WORD) * WORD
        if length > MAX_SYMBOL_LEN or len(answer) != 2 * WORD + padded or any(answer[2 * WORD + length :]):
            raise NotAToken(f"{target} answered symbol() with a malformed string of {len(answer)} bytes")
        raw = answer[2 * WORD : 2 * WORD + length]
    else:
        raise NotAToken(f"{target} answered symbol() with {len(answer)} bytes, not a string")
    text = raw.decode("ascii", errors="replace")
    if not raw or not text.isprintable() or "\ufffd" in text or text != text.strip():
        raise NotAToken(f"{target} answered symbol() with {raw[:MAX_SYMBOL_LEN]!r}, not printable ASCII text")
    return text
