"""The rules under spending, without a chain: a token's outcome from its receipt's logs, the logs a node may send,
the policy's sweep settings and the request's source address.

The end-to-end behaviour on anvil is tests/test_custody_spend.py; here each
judgement is driven with hand-made receipts, so every way an event can fail to
count (another contract, another sender or recipient, an ERC-721 shape) is its
own case.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from harbour.api import schemas
from harbour.chains.eip1559 import TRANSFER_TOPIC
from harbour.chains.rpcvalues import ChainError, Log, Receipt, node_logs
from harbour.custody import outcomes, sources, tokencheck
from harbour.custody.errors import Invalid
from harbour.governance.policy import Policy, PolicyError

TOKEN = "0x1111111111111111111111111111111111111111"
IMPOSTOR = "0x9999999999999999999999999999999999999999"
VAULT = "0x2222222222222222222222222222222222222222"
DEST = "0x3333333333333333333333333333333333333333"
ELSEWHERE = "0x4444444444444444444444444444444444444444"


def word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def transfer(value: int, *, contract: str = TOKEN, sender: str = VAULT, to: str = DEST) -> Log:
    return Log(contract, (TRANSFER_TOPIC, word(sender), word(to)), value.to_bytes(32, "big"))


def receipt(*logs: Log, status: int = 1) -> Receipt:
    return Receipt(b"\x01" * 32, 10, status, 50_000, 10**9, tuple(logs))


def judge(*logs: Log, amount: int = 1_000) -> tokencheck.Outcome:
    return tokencheck.judge(receipt(*logs), TOKEN, VAULT, DEST, amount)


# -- a token's outcome --------------------------------------------------------------------------------------------


def test_the_full_amount_logged_by_the_token_confirms_it() -> None:
    outcome = judge(transfer(1_000))
    assert (outcome.delivered, outcome.code, outcome.failed) == (1_000, None, False)


def test_no_transfer_event_means_nothing_was_paid() -> None:
    outcome = judge()
    assert outcome.failed and outcome.code == outcomes.TOKEN_NO_TRANSFER and outcome.delivered == 0
    assert outcome.text is not None and "the token reported no transfer" in outcome.text


@pytest.mark.parametrize(
    "log",
    [
        transfer(1_000, contract=IMPOSTOR),  # anyone can emit an event called Transfer
        transfer(1_000, sender=ELSEWHERE),
        transfer(1_000, to=ELSEWHERE),
        Log(TOKEN, (TRANSFER_TOPIC, word(VAULT), word(DEST), bytes(32)), b""),  # ERC-721: the id is a topic
        Log(TOKEN, (TRANSFER_TOPIC, word(VAULT), word(DEST)), (1_000).to_bytes(32, "big") + bytes(32)),
        Log(TOKEN, (b"\x07" * 32, word(VAULT), word(DEST)), (1_000).to_bytes(32, "big")),
    ],
    ids=["another-contract", "another-sender", "another-recipient", "erc721-shape", "long-data", "another-event"],
)
def test_events_that_are_not_this_tokens_transfer_to_the_destination_do_not_count(log: Log) -> None:
    assert judge(log).failed


def test_a_fee_on_transfer_token_is_confirmed_with_what_it_delivered() -> None:
    outcome = judge(transfer(990), transfer(10, to=ELSEWHERE))
    assert not outcome.failed and outcome.delivered == 990 and outcome.code == outcomes.TOKEN_FEE_DEDUCTED
    assert outcome.text is not None and "990 of the 1000" in outcome.text


def test_several_transfers_to_the_destination_add_up() -> None:
    assert judge(transfer(400), transfer(600)) == tokencheck.Outcome(1_000, None, None)


def test_the_new_codes_are_known_to_record() -> None:
    assert {outcomes.TOKEN_NO_TRANSFER, outcomes.TOKEN_FEE_DEDUCTED} <= outcomes.CODES


# -- what a node may send as a receipt's logs ----------------------------------------------------------------------


def good_log() -> dict[str, Any]:
    return {"address": TOKEN, "topics": ["0x" + TRANSFER_TOPIC.hex()], "data": "0x" + "00" * 32}


def test_a_receipts_logs_are_read() -> None:
    assert node_logs([good_log()], "logs") == (Log(TOKEN, (TRANSFER_TOPIC,), bytes(32)),)
    assert node_logs(None, "logs") == ()


@pytest.mark.parametrize(
    "logs",
    [
        "0x",
        [42],
        [good_log() | {"topics": ["0x" + "00" * 32] * 5}],
        [good_log() | {"topics": "0x00"}],
        [good_log() | {"topics": ["0x1234"]}],
        [good_log() | {"address": "0x12"}],
        [good_log() | {"data": "0xzz"}],
    ],
    ids=["not-a-list", "not-an-object", "five-topics", "topics-not-a-list", "short-topic", "bad-address", "bad-data"],
)
def test_malformed_logs_from_a_node_are_refused(logs: object) -> None:
    with pytest.raises(ChainError):
        node_logs(logs, "logs")


# -- the policy's sweep settings -----------------------------------------------------------------------------------

ALLOW = [{"name": "all", "action": "allow"}]


def setting(**changes: Any) -> dict[str, Any]:
    return {"asset": "ETH", "threshold": "1000", "initiator": "u-1"} | changes


def test_sweep_settings_round_trip_and_a_policy_without_them_keeps_its_document() -> None:
    policy = Policy.from_document({"rules": ALLOW, "sweeps": [setting(asset="USDT", gas_top_up=True), setting()]})
    assert [(w.asset, w.threshold, w.gas_top_up) for w in policy.sweeps] == [("ETH", 1000, False), ("USDT", 1000, True)]
    assert Policy.from_document(policy.to_document()) == policy
    plain = Policy.from_document({"rules": ALLOW})
    assert "sweeps" not in plain.to_document() and plain.sweeps == ()
    assert plain.digest() == Policy.from_document({"rules": ALLOW, "sweeps": []}).digest()


@pytest.mark.parametrize(
    ("sweeps", "path"),
    [
        ({"asset": "ETH"}, "sweeps"),
        ([setting(threshold="0")], "sweeps[0].threshold"),
        ([setting(threshold=-5)], "sweeps[0].threshold"),
        ([setting(threshold=1.5)], "sweeps[0].threshold"),
        ([setting(), setting(threshold="5")], "sweeps[1].asset"),
        ([setting(limit="9")], "sweeps[0].limit"),
        ([{"asset": "ETH", "threshold": "1"}], "sweeps[0].initiator"),
        ([setting(initiator="")], "sweeps[0].initiator"),
        ([setting(gas_top_up="yes")], "sweeps[0].gas_top_up"),
        ([setting()] * 101, "sweeps"),
    ],
    ids=[
        "not-an-array",
        "zero",
        "negative",
        "fraction",
        "twice",
        "unknown-key",
        "no-initiator",
        "empty-user",
        "top-up-not-bool",
        "101",
    ],
)
def test_malformed_sweep_settings_are_refused_with_their_path(sweeps: object, path: str) -> None:
    with pytest.raises(PolicyError, match="^" + re.escape(path) + ":"):
        Policy.from_document({"rules": ALLOW, "sweeps": sweeps})


# -- the request's source address ----------------------------------------------------------------------------------


def test_a_source_is_an_address_or_an_id_and_nothing_else() -> None:
    assert sources.spec(None) is None
    assert sources.spec(DEST.lower()) == "0x3333333333333333333333333333333333333333"
    assert sources.spec("5b7f3c2e-1111-4222-8333-944444444444") == "5b7f3c2e-1111-4222-8333-944444444444"
    for bad in (7, "", "0x12", "x" * 65, b"0x"):
        with pytest.raises(Invalid, match="source_address"):
            sources.spec(bad)


def test_the_api_takes_a_source_as_an_address_or_a_uuid() -> None:
    body = {"vault_id": "5b7f3c2e-1111-4222-8333-944444444444", "asset": "ETH", "to": DEST, "amount": "5"}
    assert schemas.Withdrawal.model_validate(body).source_address is None
    assert schemas.Withdrawal.model_validate(body | {"source_address": VAULT}).source_address == VAULT
    uuid = "0b7f3c2e-1111-4222-8333-944444444444"
    assert schemas.Withdrawal.model_validate(body | {"source_address": uuid}).source_address == uuid
    for bad in ("main", 12, "0x12"):
        with pytest.raises(ValidationError):
            schemas.Withdrawal.model_validate(body | {"source_address": bad})


def test_every_sub_status_code_is_documented_in_the_api_reference() -> None:
    text = (Path(__file__).parent.parent / "docs" / "api.md").read_text(encoding="utf-8")
    section = text.split("## Sub-status codes", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", section, re.MULTILINE))
    assert documented == set(outcomes.CODES)
