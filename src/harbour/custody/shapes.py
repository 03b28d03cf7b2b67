"""The JSON shapes of custody resources, one pydantic model each.

The views (:mod:`harbour.custody.views`) build these models and the API declares
them as its routes' response models, so each shape is written once and
``/openapi.json`` is the exact contract. The models are closed (an unknown field
is an error) and strict (nothing is coerced), so a view cannot drift from its
model unnoticed. Documents that other modules write and the API passes on
(:meth:`harbour.governance.policy.Decision.to_json`, the audit log's events, tree
heads and proofs, :meth:`harbour.node.quorum.Intent.to_json`) are modelled here
too: they are part of the same contract.

Amounts are decimal strings of base units (JSON numbers lose precision above
2^53). Timestamps are ISO 8601 strings in UTC, as
:func:`harbour.custody.views.iso` writes them, not datetimes: pydantic would
write ``Z`` where the API has always sent ``+00:00``.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, RootModel

Timestamp = Annotated[
    str, Field(json_schema_extra={"format": "date-time"}, examples=["2026-01-02T03:04:05.678901+00:00"])
]
BaseUnits = Annotated[
    str, Field(pattern=r"^(0|[1-9][0-9]*)$", description="Base units (wei for ETH) as a decimal string.")
]
Hex = Annotated[str, Field(pattern=r"^[0-9a-f]*$")]
T = TypeVar("T")


class Shape(BaseModel):
    """A response shape: closed and strict, so a view that sends another shape fails loudly, never silently."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Listing(Shape, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class Organisation(Shape):
    id: str
    name: str
    genesis: Hex = Field(description="Hash of the genesis governance entry, which the signer nodes pin.")
    chain_id: int = Field(description="The chain (EIP-155 id) the vaults pay on, which a signed request names.")
    created_at: Timestamp


class User(Shape):
    id: str
    org_id: str
    name: str
    roles: list[str]
    approval_key: str | None
    disabled: bool
    created_at: Timestamp


class Revoked(Shape):
    credential_id: str
    user_id: str
    revoked: Literal[True]


class Vault(Shape):
    id: str
    name: str
    key_id: str
    scheme: str
    threshold: int
    nodes: list[str]
    public_key: str
    created_at: Timestamp
    archived: bool = Field(
        description="Archived (`vault.archive`): no new withdrawal or address; deposits still count."
    )


class Address(Shape):
    id: str
    vault_id: str
    index: int
    path: str
    address: str
    label: str | None
    created_at: Timestamp


class AddressWithBalances(Address):
    balances: dict[str, BaseUnits] = Field(description="Symbol to base units, at the latest block.")


class VaultDetail(Vault):
    addresses: list[AddressWithBalances]
    balances: dict[str, BaseUnits] = Field(description="Symbol to base units over all the vault's addresses.")
    unavailable_assets: dict[str, str] = Field(
        description="Symbol to why its balances could not be read (they are left out of `balances`); the rest stand."
    )
    disabled_assets: list[str] = Field(description="Symbols of the assets no withdrawal may move (`asset.disable`).")


class Asset(Shape):
    id: str
    symbol: str
    kind: Literal["native", "erc20"]
    contract: str | None
    decimals: int
    disabled: bool = Field(description="Disabled (`asset.disable`): no withdrawal of it until it is enabled again.")


class AddressBookEntry(Shape):
    id: str
    name: str
    address: str
    whitelisted: bool
    created_at: Timestamp


class ApproverGroup(Shape):
    members: list[str]
    name: str
    threshold: int


class ApprovalRequirement(Shape):
    """Groups of approvers, all (``all``) or one (``any``) of which must be met (docs/policy.md)."""

    combine: Literal["all", "any"]
    groups: list[ApproverGroup]


class RuleTrace(Shape):
    index: int
    matched: bool
    name: str
    reached: bool
    reasons: list[str]


class PolicyDecision(Shape):
    """What the policy decided for a withdrawal, and why (:meth:`harbour.governance.policy.Decision.to_json`)."""

    action: Literal["allow", "block", "require_approval"]
    reasons: list[str]
    requirement: ApprovalRequirement | None
    rule: str | None
    rule_index: int | None
    trace: list[RuleTrace]


class PolicyVersion(Shape):
    policy_version: int


class Explanation(PolicyDecision, PolicyVersion):
    """A dry run's decision under the policy version in force (``policy_version`` comes first)."""


class FeeCaps(Shape):
    """One fee level's caps now, and the maximum fee they give with the estimated gas (wei, decimal strings)."""

    max_fee_per_gas: BaseUnits
    max_priority_fee_per_gas: BaseUnits
    max_fee: BaseUnits


class FeeEstimate(Shape):
    """What a withdrawal would be submitted with (docs/api.md#fees)."""

    gas_limit: int
    default_level: str
    levels: dict[str, FeeCaps] = Field(description="slow, normal and fast.")


class UnsignedTransaction(Shape):
    """The EIP-1559 transaction the nodes sign; integers as decimal strings."""

    chain_id: str
    nonce: str
    max_priority_fee_per_gas: str
    max_fee_per_gas: str
    gas_limit: str
    to: str
    value: str
    data: str


class Approval(Shape):
    approver_id: str
    decision: Literal["approve", "reject"]
    public_key: str
    signature: str
    created_at: Timestamp
    expires_at: Timestamp
    expired: bool = Field(description="An expired approval no longer counts toward the transaction's quorum.")


class TransactionBase(Shape):
    id: str
    kind: str
    state: str = Field(description="One of the states of docs/custody.md (submitted ... confirmed, failed).")
    initiator_id: str
    idempotency_key: str | None
    note: str | None
    created_at: Timestamp
    updated_at: Timestamp
    policy_version: int | None
    decision: PolicyDecision | None
    requirement: ApprovalRequirement | None
    error: str | None
    sub_status: str | None = Field(
        description="Why it stopped or waits, as a stable code (docs/api.md, Sub-status codes); `error` in words."
    )


class WithdrawalTransaction(TransactionBase):
    kind: Literal["withdrawal"]
    external_id: str | None = Field(description="The client's own reference, unique in the organisation.")
    vault_id: str | None
    source_address_id: str | None
    asset: str | None
    destination: str | None
    address_book_entry_id: str | None
    amount: BaseUnits | None
    initiator_signature: Hex | None = Field(
        description="The initiator's signature over the request (docs/governance.md#signed-requests), if any."
    )
    fee_level: str | None = Field(default=None, description="slow, normal or fast; null when caps were given.")
    max_fee_per_gas: BaseUnits | None = Field(default=None, description="The cap per gas given (wei), if any.")
    max_priority_fee_per_gas: BaseUnits | None = Field(default=None, description="The tip cap given (wei), if any.")
    gas_limit: int | None = Field(default=None, description="The gas estimated at submission.")
    max_fee: BaseUnits | None = Field(
        default=None, description="The most it may pay in fees (wei): what its approvers sign and the nodes enforce."
    )
    replaces_id: str | None = Field(default=None, description="The stuck transaction a speed-up or cancel replaces.")
    chain_id: int | None
    nonce: int | None
    unsigned: UnsignedTransaction | None
    digest: str | None
    tx_hash: str | None
    signers: list[int] | None
    block_number: int | None
    gas_used: int | None
    fee: BaseUnits | None
    delivered: BaseUnits | None = Field(
        description="A confirmed token withdrawal: what the token's Transfer events say reached the destination "
        "(below `amount` for a fee-on-transfer token; docs/custody.md, Token outcomes). Null otherwise."
    )
    sweep: bool = Field(description="A sweep from a deposit address to the vault's main address (docs/custody.md).")
    broadcast_at: Timestamp | None
    approvals: list[Approval] = Field(default_factory=list, description="Present on every API response.")


class GovernanceChange(Shape):
    """One change of a governance entry (docs/governance.md), in words and with the id it gives or names."""

    op: str = Field(examples=["user.add"])
    description: str
    id: str | None = Field(description="The user, credential, address-book entry, vault or asset; null otherwise.")


class GovernanceTransaction(TransactionBase):
    """A proposed governance entry: it lands once its proposer and the admin quorum have signed its bytes."""

    kind: Literal["governance"]
    seq: int = Field(description="The position the entry takes in the log if it lands.")
    prev: Hex = Field(description="Hash of the entry it follows: if another lands first, this one is superseded.")
    entry: Hex = Field(description="The entry's bytes (canonical CBOR): exactly what each admin signs.")
    changes: list[GovernanceChange]
    approvals: list[Approval] = Field(default_factory=list, description="Present on every API response.")


class Credential(Shape):
    user_id: str
    token: str = Field(description="Shown once: `hbk_<id>_<secret>`; only a hash of the secret is stored.")
    transaction: GovernanceTransaction | None = Field(
        description="For an admin, the governance change that issues the credential: the token works once it "
        "lands. Null for anyone else, whose credential works at once."
    )


class Transaction(RootModel[Annotated[WithdrawalTransaction | GovernanceTransaction, Field(discriminator="kind")]]):
    """A withdrawal or a governance change, told apart by ``kind``."""


class Intent(Shape):
    """What a withdrawal moves (:meth:`harbour.node.quorum.Intent.to_json`); each node re-derives it."""

    chain_id: int
    from_: str = Field(alias="from")
    to: str
    asset: str = Field(description='"ETH" or the token contract address.')
    amount: BaseUnits
    max_fee: BaseUnits | None = Field(
        default=None, description="The most it may pay in fees (wei), fixed at submission (docs/api.md#fees)."
    )
    replaces: str | None = Field(default=None, description="For a speed-up or cancel: the transaction it replaces.")


class WithdrawalApprovalRequest(Shape):
    transaction: WithdrawalTransaction
    statement: Hex = Field(description="The bytes the approver signs; recompute them from the fields first.")
    org: str
    key_id: str
    path: str
    intent: Intent


class GovernanceApprovalRequest(Shape):
    transaction: GovernanceTransaction
    statement: Hex = Field(description="The entry's bytes, which the admin signs; decode them and check them first.")
    org: str
    entry: Hex = Field(description="The entry's bytes (canonical CBOR).")
    changes: list[str] = Field(description="What the entry does, one line per change, as the bytes decode.")


class ApprovalRequest(RootModel[WithdrawalApprovalRequest | GovernanceApprovalRequest]):
    """What an approver signs, with the facts to check it against."""


class Policy(Shape):
    version: int
    document: dict[str, Any] = Field(description="The policy document (docs/policy.md).")
    digest: str
    seq: int = Field(description="The governance entry that put it in force.")
    transaction_id: str | None
    created_at: Timestamp


class EntrySigner(Shape):
    public_key: Hex
    user_id: str | None = Field(description="The admin whose key it was when the entry landed.")


class GovernanceEntry(Shape):
    """One entry of the organisation's governance log, decoded, with the signatures that made it effective."""

    seq: int
    hash: Hex
    prev: Hex
    proposer: str
    at: Timestamp
    changes: list[GovernanceChange]
    signers: list[EntrySigner]
    transaction_id: str | None
    signed: Hex = Field(description="The signed entry's encoding (entry bytes and signatures), to verify it anew.")


class GovernanceHead(Shape):
    """The newest entry of the governance log, and what it puts in force about the log itself."""

    org: str
    seq: int
    hash: Hex
    genesis: Hex
    quorum: int = Field(description="Admins other than the proposer who must sign every entry.")
    admins: list[str] = Field(description="The admins whose signatures count (enabled, with an approval key).")
    policy_version: int


class GovernanceNode(Shape):
    """A signer node the governance log names, or one this deployment is configured with that it does not."""

    name: str
    identity_key: Hex = Field(description="Its Ed25519 identity key (`sign_pk` in the node's descriptor.json).")
    node_id: Hex = Field(description="The node id the identity key makes (`node_id` in its descriptor.json).")
    in_log: bool = Field(description="The log names it (`node.add`): the organisation's keys may be made on it.")
    configured: bool = Field(description="This deployment is configured with it (custody.json `nodes`), same key.")


class GovernanceNodes(Shape):
    """The nodes the log names as it stands at ``seq``, then the deployment's nodes it does not name."""

    seq: int = Field(description="The log's head entry this list is read from.")
    nodes: list[GovernanceNode]


class Funding(Shape):
    """A development faucet's transfer, mined (its deposit is detected like any other)."""

    address: str = Field(description="The funded address, EIP-55.")
    amount: BaseUnits
    tx_hash: str
    chain_id: int


class Deposit(Shape):
    id: str
    vault_id: str
    address_id: str
    asset: str | None
    tx_hash: str
    log_index: int
    block_number: int
    sender: str
    amount: BaseUnits
    state: str
    created_at: Timestamp


class AuditEvent(Shape):
    """One audit log entry (:func:`harbour.custody.audit.event_view`)."""

    index: int
    at: Timestamp
    org_id: str | None
    actor_id: str | None
    kind: str
    subject: str | None
    data: dict[str, Any]
    leaf_hash: Hex


class TreeHead(Shape):
    """A signed tree head of the audit log (RFC 9162 section 4.10; docs/api.md says what is signed)."""

    log_id: str
    tree_size: int
    root: Hex
    timestamp: Timestamp
    signature: Hex
    algorithm: Literal["Ed25519"]
    public_key: Hex


class InclusionProof(Shape):
    """Event ``index`` is in the tree of ``tree_size`` events (RFC 9162 section 2.1.3)."""

    index: int
    tree_size: int
    event: AuditEvent
    leaf_hash: Hex
    audit_path: list[Hex]
    head: TreeHead


class ConsistencyProof(Shape):
    """The tree of ``new_size`` events extends the tree of ``old_size`` (RFC 9162 section 2.1.4)."""

    old_size: int
    new_size: int
    old_head: TreeHead
    new_head: TreeHead
    proof: list[Hex]


class UserPage(Listing[User]):
    pass


class CredentialInfo(Shape):
    """An API credential as listed: its terms and state, never its secret or the secret's hash."""

    id: str
    user_id: str
    state: Literal["active", "revoked", "expired"]
    created_at: str
    revoked_at: str | None
    expires_at: str | None
    scopes: list[Literal["full", "initiate", "read"]]
    allow: list[str] = Field(description="CIDR blocks requests may come from; empty: anywhere.")
    signing_key: Hex | None = Field(description="Ed25519 key every request must be signed with, if any.")


class CredentialPage(Listing[CredentialInfo]):
    pass


class VaultPage(Listing[Vault]):
    pass


class AddressPage(Listing[Address]):
    pass


class AssetPage(Listing[Asset]):
    pass


class AddressBookPage(Listing[AddressBookEntry]):
    pass


class TransactionPage(Listing[Transaction]):
    pass


class PolicyPage(Listing[Policy]):
    pass


class GovernanceEntryPage(Listing[GovernanceEntry]):
    pass


class DepositPage(Listing[Deposit]):
    pass


class AuditEventPage(Listing[AuditEvent]):
    pass
