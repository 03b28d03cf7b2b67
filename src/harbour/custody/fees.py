"""What a withdrawal may pay in fees: its level or its caps, the maximum fee its approvers sign, and the gas.

An EIP-1559 transaction pays ``gas used x (base fee + tip)``, never more than
``gas limit x max_fee_per_gas``. A withdrawal names either a **level**
(``slow``, ``normal``, ``fast``: caps derived from the chain's base fee and
suggested tip when it is built) or the two **caps** themselves
(``max_fee_per_gas``, ``max_priority_fee_per_gas``). At submission the service
estimates the gas and fixes the **maximum fee** in wei, ``gas limit x fee cap``
(:func:`quote`); it is part of the intent the approvers sign, the funds check
reserves it, and every signer node refuses a transaction that could pay more
(:func:`harbour.node.quorum.carries_out`). When the withdrawal is built, hours
later perhaps, a level takes today's caps but never beyond the maximum fee
(:func:`build_caps`).

Gas: a payment of ETH to an account without code costs exactly 21,000; one to a
contract, or a token transfer, is estimated by the node (``eth_estimateGas``)
with a margin (:meth:`harbour.custody.kinds.TransactionKind.body`). An estimate the node answers with an error
(the call would revert) is :class:`EstimateReverted`: the withdrawal cannot be
built as it stands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

from harbour.chains.evm import ChainError, EvmClient
from harbour.chains.jsonrpc import RpcError
from harbour.custody import kinds
from harbour.custody.errors import Invalid

Level = Literal["slow", "normal", "fast"]
LEVELS: Final[tuple[str, ...]] = get_args(Level)
DEFAULT_LEVEL: Final = "normal"
_SHAPE: Final[dict[str, tuple[int, int]]] = {
    # level: (base fee times this over 4, tip times this over 2). normal is 2 x base + tip, as it always was.
    "slow": (5, 1),
    "normal": (8, 2),
    "fast": (12, 4),
}
MAX_FEE_PER_GAS: Final = 10**14 - 1
"""Just under 100,000 gwei (14 digits): no cap above this is taken (a typing slip in wei, or a unit mistaken)."""
REPLACEMENT_BUMP_NUM: Final = 11
REPLACEMENT_BUMP_DEN: Final = 10
"""A replacement raises both caps by at least 10 %: what nodes require to take it in place of the first."""


class EstimateReverted(Exception):
    """The node says the transaction would fail (its gas estimate is an error): it cannot be built as it stands."""


class AboveMaximum(Exception):
    """Its gas at its own explicit caps costs more than its approved maximum fee: it never will be built."""


class FeesTooHigh(Exception):
    """Today's base fee is above what its approved maximum fee pays per gas: it waits for fees to fall."""


@dataclass(frozen=True)
class Caps:
    """The two EIP-1559 caps, in wei per gas."""

    max_fee_per_gas: int
    max_priority_fee_per_gas: int

    def to_json(self, gas_limit: int) -> dict[str, str]:
        return {
            "max_fee_per_gas": str(self.max_fee_per_gas),
            "max_priority_fee_per_gas": str(self.max_priority_fee_per_gas),
            "max_fee": str(gas_limit * self.max_fee_per_gas),
        }


@dataclass(frozen=True)
class Choice:
    """What the initiator asked for: a level, and the caps they gave themselves (either, both or none).

    A cap given is used as given and fixed at submission; one not given is the
    level's at that moment (:meth:`resolve`). With no cap given the level's caps
    follow the chain until the transaction is built.
    """

    level: str
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None

    @property
    def explicit(self) -> bool:
        return self.max_fee_per_gas is not None or self.max_priority_fee_per_gas is not None

    def resolve(self, level_now: Caps) -> Caps:
        """The caps, the ones not given taken from ``level_now``; the tip never above the cap (EIP-1559)."""
        cap = self.max_fee_per_gas if self.max_fee_per_gas is not None else level_now.max_fee_per_gas
        tip = self.max_priority_fee_per_gas
        tip = tip if tip is not None else level_now.max_priority_fee_per_gas
        return Caps(cap, min(tip, cap))


def _wei(name: str, value: object) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and (value == "0" or value[0] != "0"):
        value = int(value)
    if type(value) is not int or not 1 <= value <= MAX_FEE_PER_GAS:
        raise Invalid(f"{name} must be a whole number of wei per gas in 1..{MAX_FEE_PER_GAS}, got {value!r:.40}")
    return value


def choice(level: object = None, max_fee_per_gas: object = None, max_priority_fee_per_gas: object = None) -> Choice:
    """The fee choice of a request; Invalid for a level not known or a cap out of range."""
    if level is not None and level not in LEVELS:
        raise Invalid(f"fee level must be one of {', '.join(LEVELS)}, got {level!r:.40}")
    return Choice(
        DEFAULT_LEVEL if level is None else str(level),
        None if max_fee_per_gas is None else _wei("max_fee_per_gas", max_fee_per_gas),
        None if max_priority_fee_per_gas is None else _wei("max_priority_fee_per_gas", max_priority_fee_per_gas),
    )


def level_caps(level: str, base_fee: int, tip: int) -> Caps:
    """The caps of ``level`` for a chain at ``base_fee`` suggesting ``tip`` (wei per gas).

    ``normal`` is twice the base fee plus the tip: the base fee can rise 12.5 %
    a block, so it stays includable through six full blocks. ``slow`` tips half
    and covers a quarter's rise; ``fast`` tips double and covers three times the base fee.
    """
    base_num, tip_num = _SHAPE[level]
    priority = max(1, tip * tip_num // 2)
    return Caps(base_fee * base_num // 4 + priority, priority)


def levels(chain: EvmClient) -> dict[str, Caps]:
    """Every level's caps as the chain stands now."""
    base_fee, tip = chain.base_fee(), chain.priority_fee()
    return {name: level_caps(name, base_fee, tip) for name in LEVELS}


def body(kind: kinds.TransactionKind, order: kinds.Order, chain: EvmClient) -> kinds.Body:
    """The kind's transaction body with its gas estimated; EstimateReverted if the node says it would fail.

    Only an answer of the node's (a JSON-RPC error) is a revert; a node out of
    reach stays a ChainError, which the caller retries.
    """
    try:
        return kind.body(order, chain)
    except ChainError as exc:
        if isinstance(exc.__cause__, RpcError):
            raise EstimateReverted(exc.node_message or str(exc)) from None
        raise


@dataclass(frozen=True)
class Quote:
    """What a withdrawal would be submitted with: its gas limit, each level's caps, and its maximum fee."""

    gas_limit: int
    levels: dict[str, Caps]
    caps: Caps
    """The caps the request's choice gives now (its level's, or its own)."""

    @property
    def max_fee(self) -> int:
        return self.gas_limit * self.caps.max_fee_per_gas


def quote(kind: kinds.TransactionKind, order: kinds.Order, chain: EvmClient, chosen: Choice) -> Quote:
    """Estimate the gas of ``order`` and price it at every level: what submission fixes and the estimate shows.

    A call the node says would revert now (a token balance short, a contract
    refusing) is priced at the kind's gas reserve: the funds check then says
    whether it can be paid, and if it is still refused when built it fails with
    the node's reason (``estimate-reverted``).
    """
    try:
        gas = body(kind, order, chain).gas_limit
    except EstimateReverted:
        gas = kind.gas_reserve(order.asset)
    now = levels(chain)
    caps = chosen.resolve(now[chosen.level])
    return Quote(gas, now, caps)


def build_caps(
    *, level: str | None, explicit: Caps | None, gas_limit: int, max_fee: int, base_fee: int, tip: int
) -> Caps:
    """The caps to build with now, within the approved ``max_fee``.

    Explicit caps are used as given, so the gas must fit under them
    (AboveMaximum). A level takes today's caps, lowered to what the maximum fee
    pays for this gas if need be, as long as that still covers today's base fee
    (FeesTooHigh: it waits, and is built when fees fall).
    """
    if explicit is not None:
        if gas_limit * explicit.max_fee_per_gas > max_fee:
            raise AboveMaximum(
                f"the transaction now needs {gas_limit} gas, which at the approved {explicit.max_fee_per_gas} wei "
                f"per gas exceeds the approved maximum fee of {max_fee} wei"
            )
        return explicit
    caps = level_caps(level or DEFAULT_LEVEL, base_fee, tip)
    affordable = max_fee // gas_limit
    if affordable < max(base_fee, 1):
        raise FeesTooHigh(
            f"it needs {gas_limit} gas; its approved maximum fee of {max_fee} wei pays {affordable} wei per gas, "
            f"below today's base fee of {base_fee}: it is built when fees fall (or cancel it)"
        )
    cap = min(caps.max_fee_per_gas, affordable)
    return Caps(cap, min(caps.max_priority_fee_per_gas, cap))


def for_row(
    chain: EvmClient,
    *,
    level: str | None,
    explicit: Caps | None,
    max_fee: int | None,
    gas_limit: int,
) -> Caps:
    """The caps a withdrawal is built with now (:func:`build_caps`), reading the chain's fees once.

    A row without a maximum fee (submitted before there was one) takes the
    ``normal`` level uncapped; the signer nodes of an organisation refuse it.
    """
    base_fee, tip = chain.base_fee(), chain.priority_fee()
    if max_fee is None:
        return level_caps(DEFAULT_LEVEL, base_fee, tip)
    return build_caps(level=level, explicit=explicit, gas_limit=gas_limit, max_fee=max_fee, base_fee=base_fee, tip=tip)


def bumped(old: Caps, wanted: Caps) -> Caps:
    """``wanted``, raised where needed to replace ``old``: both caps at least 10 % higher."""

    def up(value: int) -> int:
        return -(-value * REPLACEMENT_BUMP_NUM // REPLACEMENT_BUMP_DEN)

    priority = max(wanted.max_priority_fee_per_gas, up(old.max_priority_fee_per_gas))
    return Caps(max(wanted.max_fee_per_gas, up(old.max_fee_per_gas), priority), priority)


def replaces(old: Caps, new: Caps) -> str | None:
    """Why ``new`` caps cannot replace a transaction sent with ``old`` ones, or None if they can."""
    for name, before, after in (
        ("max_fee_per_gas", old.max_fee_per_gas, new.max_fee_per_gas),
        ("max_priority_fee_per_gas", old.max_priority_fee_per_gas, new.max_priority_fee_per_gas),
    ):
        if after * REPLACEMENT_BUMP_DEN < before * REPLACEMENT_BUMP_NUM:
            return (
                f"a replacement raises {name} by at least 10 %: the stuck transaction has {before}, "
                f"so at least {-(-before * REPLACEMENT_BUMP_NUM // REPLACEMENT_BUMP_DEN)}, not {after}"
            )
    return None
