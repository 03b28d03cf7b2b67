"""Destinations nothing can be paid to, as every signer node refuses them: in the log it replays and when it decides.

The zero address and each precompile (EIP-196/197/198, EIP-152, EIP-4844,
EIP-2537, EIP-7951) are refused as an address-book entry of a governance entry
and as a withdrawal's destination in :func:`harbour.governance.decide.judge`,
whatever the policy says; so is a withdrawal to the address it pays from. The
API's refusals of the same are in ``test_api_exact.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from governance_env import INITIATOR, Org, allow_all
from harbour.chains.ethereum import checksum_address
from harbour.governance import changes as c
from harbour.governance import destinations
from harbour.governance.decide import Withdrawal, judge
from harbour.governance.fields import GovernanceError

RESERVED = [0, *range(0x01, 0x12), 0x100]
SOURCE = checksum_address(bytes.fromhex("11" * 20))
PAYEE = checksum_address(bytes.fromhex("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"))


def _address(number: int) -> str:
    return "0x" + f"{number:040x}"


def test_the_reserved_addresses_are_the_zero_address_and_the_eighteen_precompiles() -> None:
    assert sorted(destinations.PRECOMPILES) == [*range(0x01, 0x12), 0x100]
    assert [n for n in range(0x1000) if destinations.reserved(_address(n))] == RESERVED
    assert destinations.reserved(_address(0x12)) is None and destinations.reserved(PAYEE) is None


@pytest.fixture
def org() -> Org:
    return Org("destinations", policy=allow_all(), vaults={"vault-1": "key-1"})


def _judge(org: Org, destination: str, source: str | None = SOURCE) -> None:
    request = Withdrawal("key-1", INITIATOR, None, destination, 10**15, source=source)
    judge(org.log.state, request, at=datetime.now(UTC), history=[], approved_by=[])


@pytest.mark.parametrize("number", RESERVED, ids=[hex(n) for n in RESERVED])
def test_a_node_refuses_to_pay_the_zero_address_or_a_precompile(org: Org, number: int) -> None:
    for spelling in (_address(number), _address(number).upper().replace("0X", "0x")):
        with pytest.raises(GovernanceError, match="funds sent there are lost") as refused:
            _judge(org, spelling)
        assert refused.value.reason == "destination"


def test_a_node_refuses_a_withdrawal_to_the_address_it_pays_from(org: Org) -> None:
    with pytest.raises(GovernanceError, match="a payment to itself moves nothing") as refused:
        _judge(org, SOURCE.lower())
    assert refused.value.reason == "destination"


def test_an_ordinary_destination_is_decided_by_the_policy(org: Org) -> None:
    _judge(org, PAYEE)
    _judge(org, _address(0x12))
    _judge(org, PAYEE, source=None)


@pytest.mark.parametrize("number", RESERVED, ids=[hex(n) for n in RESERVED])
def test_a_log_entry_adding_a_reserved_address_to_the_book_is_refused(org: Org, number: int) -> None:
    with pytest.raises(GovernanceError, match="it cannot be an address-book entry") as refused:
        org.propose(c.AddAddress("entry-x", "burn", _address(number), True))
    assert refused.value.reason == "malformed"
    assert "entry-x" not in org.log.state.address_book
