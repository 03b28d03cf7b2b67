"""The development faucet: it funds on a development chain and refuses on any other, before reaching the node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_tester import EthereumTester
from web3 import EthereumTesterProvider, Web3

from harbour.chains.evm import EvmClient
from harbour.custody.actors import Actor
from harbour.custody.errors import Conflict, Forbidden, Invalid
from harbour.custody.faucet import MAX_FAUCET_WEI, Faucet

ADMIN = Actor("u1", "o1", "alice", frozenset({"admin"}))
TARGET = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@pytest.fixture(scope="module")
def tester() -> Iterator[Web3]:
    yield Web3(EthereumTesterProvider(EthereumTester()), middleware=[])


def test_the_faucet_funds_an_address_on_a_development_chain(tester: Web3) -> None:
    chain = EvmClient.from_web3(tester, dev=True)
    before = chain.balance(TARGET)
    out = Faucet(chain).fund(ADMIN, address=TARGET.lower(), amount=3 * 10**18)
    assert out["address"] == TARGET and out["amount"] == str(3 * 10**18)
    assert chain.balance(TARGET) == before + 3 * 10**18
    assert chain.receipt(bytes.fromhex(out["tx_hash"][2:])) is not None


def test_the_faucet_refuses_on_a_chain_that_is_not_a_development_chain(tester: Web3) -> None:
    chain = EvmClient.from_web3(tester, dev=False)
    before = chain.balance(TARGET)
    with pytest.raises(Conflict, match="only on a development chain"):
        Faucet(chain).fund(ADMIN, address=TARGET, amount=10**18)
    assert chain.balance(TARGET) == before


@pytest.mark.parametrize(
    ("address", "amount", "error", "match"),
    [
        (TARGET, 0, Invalid, "1.."),
        (TARGET, MAX_FAUCET_WEI + 1, Invalid, "1,000 ETH"),
        ("0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed", 1, Invalid, "EIP-55|checksum"),
        ("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", 1, Invalid, "0x followed by 40"),
    ],
)
def test_bad_faucet_requests_are_refused_and_send_nothing(
    tester: Web3, address: str, amount: int, error: type[Exception], match: str
) -> None:
    chain = EvmClient.from_web3(tester, dev=True)
    nonce = tester.eth.get_transaction_count(Web3.to_checksum_address(chain.dev_account()))
    with pytest.raises(error, match=match):
        Faucet(chain).fund(ADMIN, address=address, amount=amount)
    assert tester.eth.get_transaction_count(Web3.to_checksum_address(chain.dev_account())) == nonce


def test_only_an_admin_may_use_the_faucet(tester: Web3) -> None:
    viewer = Actor("u2", "o1", "vic", frozenset({"viewer", "initiator"}))
    with pytest.raises(Forbidden):
        Faucet(EvmClient.from_web3(tester, dev=True)).fund(viewer, address=TARGET, amount=1)


def test_the_faucet_refuses_a_chain_whose_id_is_no_development_chains_even_when_the_home_says_dev(
    tester: Web3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A home left with ``dev_chain`` on and pointed at another network's node: the chain id decides."""
    chain = EvmClient.from_web3(tester, dev=True)
    monkeypatch.setattr(chain, "chain_id", 1)  # what a mainnet node answers to eth_chainId
    nonce = tester.eth.get_transaction_count(Web3.to_checksum_address(chain.dev_account()))
    with pytest.raises(Conflict, match="this node says chain 1"):
        Faucet(chain).fund(ADMIN, address=TARGET, amount=10**18)
    assert tester.eth.get_transaction_count(Web3.to_checksum_address(chain.dev_account())) == nonce
