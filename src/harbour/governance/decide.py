"""Deciding a withdrawal from a governance state: the one function the service and every signer node run.

The service decides when a withdrawal is submitted and counts approvals until
the decision's requirement is met; each signer node decides again, from the
state it verified itself (:class:`harbour.governance.state.GovernanceLog`), the
transaction it is asked to sign and the approvers' signatures, before it signs.
Both describe the withdrawal to the policy with :func:`withdrawal_facts` and
decide with :func:`judge`, so the two cannot read a rule differently: which
vault a key is, which asset a token contract is, whether the destination is
whitelisted, who the initiator is and what roles they hold all come from the
quorum-signed state, never from the request. A withdrawal from an archived vault,
or of a disabled asset, is one the state refuses to describe, so no node signs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from harbour.governance import destinations
from harbour.governance.fields import GovernanceError
from harbour.governance.policy import Decision, PastTx, TxFacts, evaluate
from harbour.governance.request import request_body, verify_request
from harbour.governance.state import OrgState


class Refused(GovernanceError):
    """The policy in force does not let this withdrawal be signed (blocked, or not enough approvals)."""


@dataclass(frozen=True)
class Withdrawal:
    """A withdrawal as both sides know it: the key paid from, who asked, what, to whom, how much."""

    key_id: str
    initiator: str
    contract: str | None
    """The token contract moved (None: the chain's native coin)."""
    destination: str
    amount: int
    transaction_id: str = ""
    signature: bytes | None = None
    """The initiator's signature over the request (:mod:`harbour.governance.request`), if they signed it."""
    chain_id: int = 0
    """The chain it pays on (EIP-155), which a signed request names."""
    source: str | None = None
    """The address it pays from, where the caller knows it (a node always does: the key it signs with)."""
    replaces: str | None = None
    """The transaction it replaces at its nonce (a speed-up or a cancel), which its approvers signed."""


def withdrawal_facts(state: OrgState, request: Withdrawal, at: datetime) -> TxFacts:
    """What the policy sees of ``request``, all from ``state``; GovernanceError("facts") if it cannot say.

    A destination nothing can be paid to (the zero address, a precompile, the
    source itself: :mod:`harbour.governance.destinations`) is GovernanceError("destination"),
    whatever the policy would say.
    """
    # A cancel pays nothing to its own address on purpose: it only takes the stuck transaction's nonce.
    cancel = request.replaces is not None and request.amount == 0
    problem = destinations.check_destination(request.destination, None if cancel else request.source)
    if problem is not None:
        raise GovernanceError("destination", problem)
    vault = state.vault_of_key(request.key_id)
    if vault is None:
        raise GovernanceError("facts", f"key {request.key_id!r} is not a vault of organisation {state.org!r}")
    if vault.archived:
        raise GovernanceError("facts", f"vault {vault.name!r} ({vault.id}) is archived: it takes no new withdrawal")
    asset = state.asset_for(request.contract)
    if asset is None:
        raise GovernanceError("facts", f"{request.contract or 'the native coin'} is not an asset of {state.org!r}")
    if asset.disabled:
        raise GovernanceError("facts", f"asset {asset.symbol} ({asset.id}) is disabled: no withdrawal of it is signed")
    initiator = state.users.get(request.initiator)
    if initiator is None or initiator.disabled:
        raise GovernanceError("facts", f"the initiator {request.initiator!r} is not an enabled user of {state.org!r}")
    entry = state.entry_for(request.destination)
    return TxFacts(
        initiator_id=initiator.id,
        initiator_roles=initiator.roles,
        vault_id=vault.id,
        asset=asset.symbol,
        destination=request.destination,
        address_book_entry=None if entry is None else entry.id,
        whitelisted=entry is not None and entry.whitelisted,
        amount=request.amount,
        at=at,
    )


def check_initiation(state: OrgState, request: Withdrawal, facts: TxFacts) -> bool:
    """Whether ``request`` carries its initiator's valid signature; Refused("initiator") if it must and does not.

    A signature is needed when the policy in force depends on who initiated
    (:meth:`harbour.governance.policy.Policy.depends_on_initiator`); one given
    must verify, whatever the policy, with the initiator's current approval key
    over the request as ``state`` describes it.
    """
    needed = state.policy is not None and state.policy.depends_on_initiator()
    if request.signature is None:
        if needed:
            raise Refused(
                "initiator",
                f"the policy in force (entry {state.seq}) depends on who initiates a withdrawal, so the request "
                f"must be signed by its initiator {request.initiator!r} with their approval key",
            )
        return False
    key = state.users[facts.initiator_id].approval_key
    if key is None:
        raise Refused("initiator", f"the initiator {request.initiator!r} has no approval key to have signed with")
    body = request_body(
        org=state.genesis,
        chain_id=request.chain_id,
        transaction_id=request.transaction_id,
        vault=facts.vault_id,
        asset=facts.asset,
        destination=facts.destination,
        amount=facts.amount,
    )
    if not verify_request(key, request.signature, body):
        raise Refused(
            "initiator",
            f"the request's signature is not its initiator's ({request.initiator!r}, key {key.hex()}) over this "
            f"withdrawal (transaction {request.transaction_id!r}, {facts.amount} {facts.asset} to {facts.destination})",
        )
    return True


def approvers(state: OrgState, keys: Iterable[bytes]) -> frozenset[str]:
    """The enabled approvers whose current approval key is among ``keys`` (others count for nothing)."""
    wanted = frozenset(keys)
    return frozenset(
        u.id
        for u in state.users.values()
        if not u.disabled and "approver" in u.roles and u.approval_key is not None and u.approval_key in wanted
    )


def decide(state: OrgState, facts: TxFacts, history: Sequence[PastTx]) -> Decision:
    """The policy in force's decision; with no policy in force, nothing is allowed."""
    if state.policy is None:
        raise Refused("facts", f"organisation {state.org!r} has no policy in force")
    return evaluate(state.policy, facts, history)


def assess(state: OrgState, request: Withdrawal, at: datetime, history: Sequence[PastTx]) -> tuple[TxFacts, Decision]:
    """What the policy sees of ``request`` and its decision, once its initiator's signature passed where needed."""
    facts = withdrawal_facts(state, request, at)
    check_initiation(state, request, facts)
    return facts, decide(state, facts, history)


def judge(
    state: OrgState,
    request: Withdrawal,
    *,
    at: datetime,
    history: Sequence[PastTx],
    approved_by: Iterable[bytes],
) -> Decision:
    """The decision, if it lets ``request`` be signed with the approvals of these keys; else Refused.

    ``approved_by`` are the keys whose approval signatures over this withdrawal
    the caller verified. Refused("quorum") names what is still missing,
    Refused("policy") carries the blocking rule's reasons, Refused("initiator")
    says the request lacks its initiator's signature the policy needs, or has
    one that does not verify.
    """
    _, decision = assess(state, request, at, history)
    if decision.action == "block":
        rule = f"rule {decision.rule!r}" if decision.rule else "no rule (default deny)"
        raise Refused(
            "policy", f"the policy in force (entry {state.seq}) blocks it: {rule}; {'; '.join(decision.reasons)}"
        )
    if decision.action == "require_approval":
        assert decision.requirement is not None
        ids = approvers(state, approved_by)
        if not decision.requirement.satisfied(ids, request.initiator):
            missing = "; ".join(decision.requirement.missing(ids, request.initiator))
            raise Refused("quorum", f"rule {decision.rule!r} needs approvals that are missing: {missing}")
    return decision
