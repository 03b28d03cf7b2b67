"""EIP-1559 transactions and ERC-20 calldata (chains/eip1559.py), against eth-account and eth-abi.

eth-account is an independent implementation of EIP-2718/EIP-1559 encoding: for the
same fields it must compute the same signing hash, and its own signature over that
hash, assembled by ``signed()``, must give byte-for-byte the raw transaction it
produces itself. Every malformed field, JSON document, address and calldata is
refused with TransactionError.
"""

from __future__ import annotations

from typing import Any

import pytest
import rlp
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from harbour.chains.eip1559 import (
    MAX_DATA_LEN,
    SECP256K1_N,
    TRANSFER_SELECTOR,
    TRANSFER_TOPIC,
    Eip1559Transaction,
    TransactionError,
    erc20_transfer_data,
    parse_address,
    parse_erc20_transfer,
    transaction_hash,
)
from harbour.chains.ethereum import checksum_address

# The Web3 Secret Storage example key (also in test_ethereum.py) and its address.
KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
TO = bytes.fromhex("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")
N = SECP256K1_N


def tx(**changes: Any) -> Eip1559Transaction:
    fields: dict[str, Any] = {
        "chain_id": 1,
        "nonce": 7,
        "max_priority_fee_per_gas": 2 * 10**9,
        "max_fee_per_gas": 30 * 10**9,
        "gas_limit": 21_000,
        "to": TO,
        "value": 10**18,
        "data": b"",
    }
    fields.update(changes)
    return Eip1559Transaction(**fields)


def as_eth_account(t: Eip1559Transaction) -> dict[str, Any]:
    return {
        "type": 2,
        "chainId": t.chain_id,
        "nonce": t.nonce,
        "maxPriorityFeePerGas": t.max_priority_fee_per_gas,
        "maxFeePerGas": t.max_fee_per_gas,
        "gas": t.gas_limit,
        "to": checksum_address(t.to),
        "value": t.value,
        "data": "0x" + t.data.hex(),
        "accessList": [],
    }


def sign(t: Eip1559Transaction, key: bytes = KEY) -> bytes:
    """Sign the signing hash with eth-account (a plain ECDSA signature) and assemble with ``signed``."""
    signature = Account._sign_hash(t.signing_hash(), key)
    return t.signed(signature.v - 27, signature.r, signature.s)


# -- agreement with eth-account -----------------------------------------------------------------------


def test_signing_hash_and_raw_match_eth_account() -> None:
    t = tx(data=erc20_transfer_data(TO, 5))
    reference = Account.sign_transaction(as_eth_account(t), KEY)
    assert t.signing_hash() == TypedTransaction.from_dict(as_eth_account(t)).hash()
    raw = sign(t)
    assert raw == bytes(reference.raw_transaction)
    assert transaction_hash(raw) == bytes(reference.hash)
    assert Account.recover_transaction(raw) == ADDRESS


def test_raw_layout_is_type_2_envelope() -> None:
    """EIP-2718: one type byte, then the RLP list of nine fields and y_parity, r, s."""
    raw = sign(tx())
    assert raw[0] == 2
    fields = rlp.decode(raw[1:])
    assert len(fields) == 12
    assert fields[5] == TO and fields[8] == []
    assert tx().unsigned_payload() == b"\x02" + rlp.encode(fields[:9])


uint64 = st.integers(0, 2**64 - 1)
uint256 = st.integers(0, 2**256 - 1)


@settings(max_examples=40, deadline=None)
@given(
    chain_id=st.integers(1, 2**64 - 1),
    nonce=st.integers(0, 2**64 - 2),
    fees=st.tuples(uint256, uint256).map(sorted),
    gas_limit=uint64,
    to=st.binary(min_size=20, max_size=20),
    value=uint256,
    data=st.binary(max_size=200),
)
def test_any_transaction_matches_eth_account(
    chain_id: int, nonce: int, fees: list[int], gas_limit: int, to: bytes, value: int, data: bytes
) -> None:
    t = Eip1559Transaction(chain_id, nonce, fees[0], fees[1], gas_limit, to, value, data)
    reference = Account.sign_transaction(as_eth_account(t), KEY)
    assert t.signing_hash() == TypedTransaction.from_dict(as_eth_account(t)).hash()
    assert sign(t) == bytes(reference.raw_transaction)
    assert Eip1559Transaction.from_json(t.to_json()) == t


def test_chain_id_is_signed() -> None:
    """EIP-155 replay protection: a signature made for chain 1 names someone else on chain 5."""
    signature = Account._sign_hash(tx(chain_id=1).signing_hash(), KEY)
    on_1 = tx(chain_id=1).signed(signature.v - 27, signature.r, signature.s)
    on_5 = tx(chain_id=5).signed(signature.v - 27, signature.r, signature.s)
    assert rlp.decode(on_1[1:])[0] == b"\x01"
    assert Account.recover_transaction(on_1) == ADDRESS
    assert Account.recover_transaction(on_5) != ADDRESS


def test_eth_account_signatures_are_low_s() -> None:
    """What signed() accepts is what nodes accept: EIP-2 low s."""
    for nonce in range(20):
        assert Account._sign_hash(tx(nonce=nonce).signing_hash(), KEY).s <= N // 2


def test_json_round_trip_keeps_big_integers_exact() -> None:
    t = tx(value=2**256 - 1, max_fee_per_gas=2**255, max_priority_fee_per_gas=2**53 + 1)
    document = t.to_json()
    assert document["value"] == str(2**256 - 1)
    assert document["to"] == checksum_address(TO)
    assert Eip1559Transaction.from_json(document) == t


# -- ERC-20 calldata and event topic ------------------------------------------------------------------


def test_transfer_selector_and_topic() -> None:
    assert keccak(text="transfer(address,uint256)")[:4] == TRANSFER_SELECTOR
    assert keccak(text="Transfer(address,address,uint256)") == TRANSFER_TOPIC
    assert TRANSFER_TOPIC.hex() == "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


@settings(max_examples=50, deadline=None)
@given(recipient=st.binary(min_size=20, max_size=20), amount=uint256)
def test_erc20_calldata_round_trip(recipient: bytes, amount: int) -> None:
    data = erc20_transfer_data(recipient, amount)
    assert data == TRANSFER_SELECTOR + abi_encode(["address", "uint256"], [checksum_address(recipient), amount])
    assert parse_erc20_transfer(data) == (recipient, amount)


# -- refusals -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("chain_id", 0),
        ("chain_id", -1),
        ("chain_id", 2**64),
        ("chain_id", True),
        ("chain_id", 1.0),
        ("chain_id", "1"),
        ("nonce", -1),
        ("nonce", 2**64 - 1),  # EIP-2681 caps nonces at 2^64 - 2
        ("nonce", None),
        ("max_priority_fee_per_gas", -1),
        ("max_priority_fee_per_gas", 31 * 10**9),  # above max_fee_per_gas
        ("max_fee_per_gas", 2**256),
        ("max_fee_per_gas", 10**9),  # below max_priority_fee_per_gas
        ("gas_limit", -1),
        ("gas_limit", 2**64),
        ("to", TO[:19]),
        ("to", TO + b"\0"),
        ("to", bytearray(TO)),
        ("to", checksum_address(TO)),
        ("to", None),  # contract creation is not something custody sends
        ("to", b""),
        ("value", -1),
        ("value", 2**256),
        ("value", 0.5),
        ("data", "0x"),
        ("data", bytearray(b"\x01")),
        ("data", bytes(MAX_DATA_LEN + 1)),
    ],
)
def test_bad_field_refused(field: str, value: object) -> None:
    with pytest.raises(TransactionError):
        tx(**{field: value})


@pytest.mark.parametrize(
    ("y_parity", "r", "s"),
    [
        (2, 1, 1),
        (-1, 1, 1),
        (27, 1, 1),  # a legacy v, not a y parity
        (0, 0, 1),
        (0, N, 1),
        (0, 1, 0),
        (0, 1, N // 2 + 1),  # high s (EIP-2)
        (0, 1, N - 1),
    ],
)
def test_bad_signature_refused(y_parity: int, r: int, s: int) -> None:
    with pytest.raises(TransactionError):
        tx().signed(y_parity, r, s)


@pytest.mark.parametrize(("y_parity", "r", "s"), [(True, 1, 1), (1.0, 1, 1), (0, 1.0, 1), (0, 1, True)])
def test_non_integer_signature_refused(y_parity: object, r: object, s: object) -> None:
    with pytest.raises(TransactionError):
        tx().signed(y_parity, r, s)  # type: ignore[arg-type]


def _json(**changes: object) -> dict[str, object]:
    document = tx(data=b"\x01\x02").to_json()
    document.update(changes)
    return document


@pytest.mark.parametrize(
    "document",
    [
        None,
        [],
        "{}",
        {k: v for k, v in _json().items() if k != "nonce"},
        {**_json(), "access_list": []},
        _json(nonce=7),  # a JSON number, not a decimal string
        _json(nonce="07"),
        _json(nonce="-7"),
        _json(nonce="+7"),
        _json(nonce="7.0"),
        _json(nonce=" 7"),
        _json(nonce=""),
        _json(nonce="0x7"),
        _json(value="1" * 79),
        _json(value=str(2**256)),
        _json(chain_id="0"),
        _json(data="0102"),
        _json(data="0x012"),
        _json(data="0xzz"),
        _json(data=None),
        _json(to="0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),  # one letter's case changed: bad EIP-55
        _json(to="0x5aaeb6053f3e94c9b9a09f33669435e7ef1bea"),
        _json(to=None),
    ],
)
def test_bad_json_refused(document: object) -> None:
    with pytest.raises(TransactionError):
        Eip1559Transaction.from_json(document)


@pytest.mark.parametrize("document", [_json(nonce="\u0667"), _json(nonce="\u00b2"), _json(data="0x01 02")])
def test_non_canonical_json_refused(document: object) -> None:
    with pytest.raises(TransactionError):
        Eip1559Transaction.from_json(document)


@pytest.mark.parametrize(
    "text",
    [
        None,
        b"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0X5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAedd",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeaED",  # bad EIP-55 checksum
    ],
)
def test_bad_address_refused(text: object) -> None:
    with pytest.raises(TransactionError):
        parse_address(text)  # type: ignore[arg-type]


def test_address_with_whitespace_refused() -> None:
    with pytest.raises(TransactionError):
        parse_address("0x" + "00" * 19 + "  ")


def test_address_forms_accepted() -> None:
    for text in ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0x" + TO.hex(), "0x" + TO.hex().upper()):
        assert parse_address(text) == TO


@pytest.mark.parametrize(
    ("recipient", "amount"),
    [(TO[:19], 1), (TO + b"\0", 1), (bytearray(TO), 1), (TO, -1), (TO, 2**256), (TO, True), (TO, 1.0)],
)
def test_bad_transfer_arguments_refused(recipient: object, amount: object) -> None:
    with pytest.raises(TransactionError):
        erc20_transfer_data(recipient, amount)  # type: ignore[arg-type]


GOOD_CALLDATA = erc20_transfer_data(TO, 5)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        GOOD_CALLDATA[:-1],
        GOOD_CALLDATA + b"\0",
        bytes.fromhex("23b872dd") + GOOD_CALLDATA[4:],  # transferFrom's selector
        GOOD_CALLDATA[:4] + b"\x01" + GOOD_CALLDATA[5:],  # dirty padding above the address
    ],
)
def test_bad_calldata_refused(data: bytes) -> None:
    with pytest.raises(TransactionError):
        parse_erc20_transfer(data)
