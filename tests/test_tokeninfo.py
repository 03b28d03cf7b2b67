"""What a contract says it is, read as custody reads a token before registering it.

Real contracts on the embedded chain: the project's token, one that returns its
symbol as ``bytes32`` (as some early tokens do), and contracts that answer each
call wrongly. Each wrong answer is refused with the call it failed named.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harbour.chains.evm import EvmClient
from harbour.chains.rpcvalues import node_bytes, node_mapping
from harbour.chains.token import compile_vyper
from harbour.chains.tokeninfo import NotAToken, TokenInfo, read_token

HEADER = "# pragma version ^0.4.0\n"
LONG = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
"""A symbol longer than any registry holds (32 bytes)."""


def contract(decimals: str = "return 6", symbol: str = 'return "OK"', symbol_type: str = "String[32]") -> str:
    return (
        HEADER
        + f"@external\n@view\ndef decimals() -> uint256:\n    {decimals}\n\n"
        + f"@external\n@view\ndef symbol() -> {symbol_type}:\n    {symbol}\n\n"
        + "@external\n@view\ndef balanceOf(owner: address) -> uint256:\n    return 0\n"
    )


@pytest.fixture(scope="module")
def chain() -> Iterator[EvmClient]:
    client = EvmClient.embedded()
    yield client
    client.close()


def deploy(chain: EvmClient, source: str) -> str:
    _, bytecode = compile_vyper(source)
    call = {"from": chain.dev_account(), "data": "0x" + bytecode.hex(), "gas": hex(1_000_000)}
    sent = node_bytes(chain.request("eth_sendTransaction", [call]), "a transaction hash", 32)
    assert chain.wait(sent).status == 1
    receipt = node_mapping(chain.request("eth_getTransactionReceipt", ["0x" + sent.hex()]), "a receipt")
    return str(receipt["contractAddress"])


def test_the_projects_token_reads_as_what_it_was_deployed_as(chain: EvmClient) -> None:
    token = chain.deploy_token("Test Dollar", "TUSD", 6, 10**9)
    assert read_token(chain, token) == TokenInfo(token, "TUSD", 6)
    assert read_token(chain, token.lower()).contract == token, "any case in, the checksummed address out"


def test_a_bytes32_symbol_is_read_as_early_tokens_return_it(chain: EvmClient) -> None:
    address = deploy(chain, contract(symbol="return convert(b'MKR', bytes32)", symbol_type="bytes32"))
    assert read_token(chain, address).symbol == "MKR"


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        (contract(decimals="return 37"), "not a uint8 in 0..36"),
        (contract(decimals="return 2**255"), "not a uint8 in 0..36"),
        (contract(decimals="raise 'no'"), "does not answer decimals()"),
        (contract(symbol='return ""'), "not printable ASCII"),
        (contract(symbol='return " OK"'), "not printable ASCII"),
        (contract(symbol="return convert(b'\\x01\\x02', bytes32)", symbol_type="bytes32"), "not printable ASCII"),
        (contract(symbol=f'return "{LONG}"', symbol_type="String[40]"), "malformed string"),
        (HEADER + "@external\n@view\ndef decimals() -> uint8:\n    return 6\n", "does not answer symbol()"),
    ],
    ids=[
        "decimals above 36",
        "decimals far out of range",
        "decimals reverts",
        "empty symbol",
        "symbol with a space around it",
        "bytes32 symbol of control bytes",
        "symbol longer than 32",
        "no symbol",
    ],
)
def test_a_contract_that_answers_wrongly_is_not_a_token(chain: EvmClient, source: str, needle: str) -> None:
    address = deploy(chain, source)
    with pytest.raises(NotAToken) as refused:
        read_token(chain, address)
    assert needle in str(refused.value) and address in str(refused.value)


def test_an_account_without_code_is_not_a_token(chain: EvmClient) -> None:
    with pytest.raises(NotAToken, match="has no code"):
        read_token(chain, chain.dev_account())
