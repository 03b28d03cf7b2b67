"""Fees without a chain: levels and caps, the maximum fee in the intent, replacements, and one transaction per nonce.

What the service fixes at submission (:mod:`harbour.custody.fees`), what the
approvers sign of it (:class:`harbour.node.quorum.Intent`'s ``max_fee`` and
``replaces``) and what a node checks (:func:`harbour.node.quorum.carries_out`,
:class:`harbour.node.orgs.nonces.NonceBook`). The same on anvil, with signer
nodes and stuck transactions, is tests/test_stuck.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from harbour.chains.eip1559 import Eip1559Transaction, parse_address
from harbour.custody import fees
from harbour.custody.errors import Invalid
from harbour.node.certificate import ApprovalError
from harbour.node.orgs.nonces import NonceBook
from harbour.node.quorum import ETH, EvidenceError, Intent, approval_statement, carries_out

SENDER = "0x1111111111111111111111111111111111111111"
RECIPIENT = "0x2222222222222222222222222222222222222222"
GWEI = 10**9


def payment(gas_limit: int = 21_000, max_fee_per_gas: int = 30 * GWEI, value: int = 5) -> Eip1559Transaction:
    return Eip1559Transaction(
        chain_id=1,
        nonce=0,
        max_priority_fee_per_gas=GWEI,
        max_fee_per_gas=max_fee_per_gas,
        gas_limit=gas_limit,
        to=parse_address(RECIPIENT),
        value=value,
    )


# -- the choice a request makes ------------------------------------------------------------------------------------


def test_no_choice_is_the_normal_level() -> None:
    assert fees.choice() == fees.Choice("normal")
    assert fees.choice("fast") == fees.Choice("fast") and not fees.choice("fast").explicit


def test_caps_given_are_used_and_the_level_fills_the_others_the_tip_never_above_the_cap() -> None:
    level = fees.Caps(22 * GWEI, 2 * GWEI)
    both = fees.choice(None, "30000000000", 10**9)
    assert both == fees.Choice("normal", 30 * GWEI, GWEI) and both.explicit
    assert both.resolve(level) == fees.Caps(30 * GWEI, GWEI)
    assert fees.choice("fast", 40 * GWEI).resolve(level) == fees.Caps(40 * GWEI, 2 * GWEI)
    assert fees.choice(None, None, 5 * GWEI).resolve(level) == fees.Caps(22 * GWEI, 5 * GWEI)
    assert fees.choice(None, GWEI, 2 * GWEI).resolve(level) == fees.Caps(GWEI, GWEI)  # EIP-1559: tip <= cap


@pytest.mark.parametrize(
    ("level", "max_fee", "tip", "needle"),
    [
        ("urgent", None, None, "fee level must be one of slow, normal, fast"),
        (None, 0, 0, "in 1.."),
        (None, 10**14, GWEI, "in 1.."),
        (None, 10**15, GWEI, "in 1.."),
        (None, "030", "1", "in 1.."),
        (None, -5, 1, "in 1.."),
        (None, 1.5, 1, "in 1.."),
    ],
)
def test_a_malformed_fee_choice_is_refused(level: Any, max_fee: Any, tip: Any, needle: str) -> None:
    with pytest.raises(Invalid, match=needle):
        fees.choice(level, max_fee, tip)


def test_levels_are_ordered_and_normal_is_twice_the_base_fee_and_the_tip() -> None:
    slow, normal, fast = (fees.level_caps(name, 10 * GWEI, 2 * GWEI) for name in ("slow", "normal", "fast"))
    assert normal == fees.Caps(22 * GWEI, 2 * GWEI)
    assert slow.max_fee_per_gas < normal.max_fee_per_gas < fast.max_fee_per_gas
    assert slow.max_priority_fee_per_gas < normal.max_priority_fee_per_gas < fast.max_priority_fee_per_gas
    assert fees.Caps(3, 2).to_json(21_000) == {
        "max_fee_per_gas": "3",
        "max_priority_fee_per_gas": "2",
        "max_fee": "63000",
    }


# -- building within the approved maximum fee ------------------------------------------------------------------------


def test_explicit_caps_are_built_as_given_while_the_gas_fits_the_maximum_fee() -> None:
    caps = fees.Caps(30 * GWEI, GWEI)
    built = fees.build_caps(
        level=None, explicit=caps, gas_limit=21_000, max_fee=21_000 * 30 * GWEI, base_fee=GWEI, tip=GWEI
    )
    assert built == caps
    with pytest.raises(fees.AboveMaximum, match="exceeds the approved maximum fee"):
        fees.build_caps(
            level=None, explicit=caps, gas_limit=21_001, max_fee=21_000 * 30 * GWEI, base_fee=GWEI, tip=GWEI
        )


def test_a_level_is_lowered_to_what_the_maximum_fee_pays_and_waits_below_the_base_fee() -> None:
    approved = 21_000 * 22 * GWEI  # the normal level at submission, base fee 10 gwei
    calm = fees.build_caps(level="normal", explicit=None, gas_limit=21_000, max_fee=approved, base_fee=5, tip=GWEI)
    assert calm == fees.Caps(GWEI + 10, GWEI)  # today's caps: lower than approved
    busy = fees.build_caps(
        level="normal", explicit=None, gas_limit=21_000, max_fee=approved, base_fee=20 * GWEI, tip=2 * GWEI
    )
    assert busy == fees.Caps(22 * GWEI, 2 * GWEI)  # 42 gwei today, held at what was approved
    with pytest.raises(fees.FeesTooHigh, match="below today's base fee"):
        fees.build_caps(level="normal", explicit=None, gas_limit=21_000, max_fee=approved, base_fee=23 * GWEI, tip=GWEI)


def test_a_replacement_raises_both_caps_by_ten_percent_and_a_lower_one_is_refused() -> None:
    old = fees.Caps(20 * GWEI, 2 * GWEI)
    assert fees.replaces(old, fees.Caps(22 * GWEI, 2_200_000_000)) is None
    lower = fees.replaces(old, fees.Caps(30 * GWEI, 2 * GWEI))
    assert lower is not None and "max_priority_fee_per_gas by at least 10 %" in lower
    assert fees.replaces(old, fees.Caps(21 * GWEI, 3 * GWEI)) is not None
    assert fees.bumped(old, fees.Caps(GWEI, 1)) == fees.Caps(22 * GWEI, 2_200_000_000)
    assert fees.bumped(old, fees.Caps(50 * GWEI, 5 * GWEI)) == fees.Caps(50 * GWEI, 5 * GWEI)


# -- the maximum fee and the replaced transaction in what approvers sign -------------------------------------------


def test_the_node_refuses_a_transaction_that_may_pay_more_than_the_signed_maximum_fee() -> None:
    intent = Intent(1, SENDER, RECIPIENT, ETH, 5, max_fee=21_000 * 30 * GWEI)
    assert carries_out(payment(), intent) is None
    problem = carries_out(payment(max_fee_per_gas=30 * GWEI + 1), intent)
    assert problem is not None and "above the approved maximum fee of 630000000000000 wei" in problem
    problem = carries_out(payment(gas_limit=21_001), intent)
    assert problem is not None and "gas limit 21001" in problem


def test_an_intent_without_the_new_fields_signs_the_same_bytes_as_before() -> None:
    plain = Intent(1, SENDER, RECIPIENT, ETH, 5)
    assert plain.to_json() == {"chain_id": 1, "from": SENDER, "to": RECIPIENT, "asset": ETH, "amount": "5"}
    capped = Intent(1, SENDER, RECIPIENT, ETH, 5, max_fee=7, replaces="tx-1")
    assert Intent.from_json(capped.to_json()) == capped
    statement = approval_statement(org="o", transaction_id="t", key_id="k", path="m/0", intent=capped)
    assert statement != approval_statement(org="o", transaction_id="t", key_id="k", path="m/0", intent=plain)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"max_fee": "07"}, "max_fee must be a canonical decimal string"),
        ({"max_fee": 7}, "max_fee must be a canonical decimal string"),
        ({"max_fee": "0"}, "max_fee must be an integer in 1.."),
        ({"replaces": ""}, "replaces must be printable text"),
        ({"amount": "0"}, "amount must be an integer in 1.."),
        ({"fee": "1"}, "exactly the fields"),
    ],
)
def test_a_malformed_intent_is_refused(changes: dict[str, Any], needle: str) -> None:
    obj = {**Intent(1, SENDER, RECIPIENT, ETH, 5).to_json(), **changes}
    with pytest.raises(EvidenceError, match=needle):
        Intent.from_json(obj)


def test_only_a_replacement_moves_nothing() -> None:
    with pytest.raises(EvidenceError, match="amount must be an integer in 1"):
        Intent(1, SENDER, SENDER, ETH, 0)
    cancel = Intent(1, SENDER, SENDER, ETH, 0, max_fee=1, replaces="stuck")
    assert cancel.to_json()["amount"] == "0"


# -- one transaction per nonce at a node ----------------------------------------------------------------------------


def test_a_node_signs_a_second_transaction_at_a_nonce_only_as_a_replacement_of_one_it_signed() -> None:
    book = NonceBook()
    book.check("org", SENDER, 3, "first", None)
    book.add("org", SENDER, 3, "first")
    book.check("org", SENDER, 3, "first", None)  # the same transaction again: a retry
    book.check("org", SENDER, 4, "other", None)  # another nonce
    book.check("other-org", SENDER, 3, "other", None)
    with pytest.raises(ApprovalError, match="names none it replaces") as exc:
        book.check("org", SENDER, 3, "second", None)
    assert exc.value.reason == "reused"
    with pytest.raises(ApprovalError, match="names 'elsewhere' as the one it replaces"):
        book.check("org", SENDER, 3, "second", "elsewhere")
    book.check("org", SENDER, 3, "speed-up", "first")
    book.add("org", SENDER, 3, "speed-up")
    book.check("org", SENDER, 3, "cancel", "speed-up")  # a replacement of the replacement
    assert book.signed("org", SENDER, 3) == {"first", "speed-up"}
