"""The development faucet: ETH for an address, from a development chain's own prefunded account.

The embedded chain (py-evm) lives inside the ``custody serve`` process, so no
other process can send it a transaction: without this, a walk-through on the
embedded defaults cannot fund the vault it just made. A development chain's node
holds prefunded accounts whose keys it keeps itself (:mod:`harbour.chains.devchain`);
the faucet sends from the first of them.

It answers only when the deployment's chain is a development chain: the
embedded one, or a JSON-RPC node the home was initialised for with
``--dev-chain`` (anvil). On any other chain it refuses before it reaches the
node, since a production node has no such account, or one nobody should spend
from. The deposit it makes is detected and audited like any other.
"""

from __future__ import annotations

from typing import Any, Final

from harbour.chains.eip1559 import TransactionError
from harbour.chains.ethereum import checksum_address
from harbour.chains.evm import EvmClient
from harbour.chains.rpcvalues import ChainError, caller_address
from harbour.custody.actors import Actor, require
from harbour.custody.errors import Conflict, Invalid, Unavailable

MAX_FAUCET_WEI: Final = 1_000 * 10**18
"""The most one request sends: 1,000 ETH, plenty for a walk-through, bounded against a typo."""

DEV_CHAIN_IDS: Final = frozenset({31337, 1337, 131277322940537})
"""Chain ids the faucet spends on: anvil's and Hardhat's (31337), Ganache's (1337) and the embedded chain's.

``dev_chain`` in custody.json says the operator meant a development node; the chain id
is what the node says it is. Both must agree, so a home left with ``dev_chain`` on and
pointed at a public network's node still spends nothing from that node's accounts.
"""

NOT_A_DEV_CHAIN: Final = (
    "the faucet funds addresses only on a development chain (the embedded chain, or a JSON-RPC node "
    "initialised with `harbour custody init --dev-chain`); on this chain, fund the address from a wallet"
)


Json = dict[str, Any]


class Faucet:
    def __init__(self, chain: EvmClient) -> None:
        self.chain = chain

    def fund(self, actor: Actor, *, address: str, amount: int) -> Json:
        """Send ``amount`` wei to ``address`` and wait for it to be mined; answers the transaction."""
        require(actor, "admin")
        if not self.chain.is_dev:
            raise Conflict(NOT_A_DEV_CHAIN)
        if self.chain.chain_id not in DEV_CHAIN_IDS:
            ids = ", ".join(str(i) for i in sorted(DEV_CHAIN_IDS))
            raise Conflict(
                f"the faucet spends only on a development chain's id ({ids}); this node says chain "
                f"{self.chain.chain_id}, so it is not used as one even though the home says dev_chain"
            )
        if not 0 < amount <= MAX_FAUCET_WEI:
            raise Invalid(f"the faucet sends 1..{MAX_FAUCET_WEI} wei (1,000 ETH) at a time, not {amount}")
        try:
            caller_address(address)
        except TransactionError as exc:
            raise Invalid(str(exc)) from None
        try:
            tx_hash = self.chain.fund(address, amount)
        except ChainError as exc:
            raise Unavailable(f"the development chain did not take the funding transaction: {exc}") from None
        return {
            "address": checksum_address(caller_address(address)),
            "amount": str(amount),
            "tx_hash": "0x" + tx_hash.hex(),
            "chain_id": self.chain.chain_id,
        }
