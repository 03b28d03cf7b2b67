"""Response shapes, for the OpenAPI schema.

The service returns JSON-ready dicts (:mod:`harbour.custody.views`); these models
describe them so that clients can generate types. They document and are not
applied at run time (a field the service adds is passed through, never dropped
or turned into a 500); the API tests validate real responses against them, so
the schema cannot drift from what the service sends. Amounts and balances are
decimal strings of base units.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Problem(Open):
    """An RFC 9457 problem document (``application/problem+json``)."""

    type: str = Field(examples=["https://harbour.dev/problems/forbidden"])
    title: str
    status: int
    detail: str
    instance: str
    errors: list[dict[str, str]] | None = Field(
        default=None, description="Validation problems only: each offending field's location and message."
    )


class Page(Open, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class Health(Open):
    status: Literal["ok"]
    version: str


class Me(Open):
    user_id: str
    org_id: str
    name: str
    roles: list[str]


class Organisation(Open):
    id: str
    name: str
    created_at: str


class User(Open):
    id: str
    org_id: str
    name: str
    roles: list[str]
    approval_key: str | None
    disabled: bool
    created_at: str


class Credential(Open):
    user_id: str
    token: str = Field(description="Shown once: `hbk_<id>_<secret>`; only a hash of the secret is stored.")


class Revoked(Open):
    credential_id: str
    user_id: str
    revoked: bool


class Vault(Open):
    id: str
    name: str
    key_id: str
    scheme: str
    threshold: int
    nodes: list[str]
    public_key: str
    created_at: str


class Address(Open):
    id: str
    vault_id: str
    index: int
    path: str
    address: str
    label: str | None
    created_at: str


class AddressWithBalances(Address):
    balances: dict[str, str] = Field(description="Symbol to base units, at the latest block.")


class VaultDetail(Vault):
    addresses: list[AddressWithBalances]
    balances: dict[str, str] = Field(description="Symbol to base units over all the vault's addresses.")


class Asset(Open):
    id: str
    symbol: str
    kind: Literal["native", "erc20"]
    contract: str | None
    decimals: int


class AddressBookEntry(Open):
    id: str
    name: str
    address: str
    whitelisted: bool
    created_at: str


class Approval(Open):
    approver_id: str
    decision: Literal["approve", "reject"]
    public_key: str
    signature: str
    created_at: str


class Transaction(Open):
    """A withdrawal or a policy change; withdrawal fields are present only on withdrawals."""

    id: str
    kind: Literal["withdrawal", "policy_change"]
    state: str
    initiator_id: str
    idempotency_key: str | None
    note: str | None
    created_at: str
    updated_at: str
    policy_version: int | None
    decision: dict[str, Any] | None
    requirement: dict[str, Any] | None
    error: str | None
    vault_id: str | None = None
    asset: str | None = None
    destination: str | None = None
    amount: str | None = None
    chain_id: int | None = None
    nonce: int | None = None
    tx_hash: str | None = None
    block_number: int | None = None
    fee: str | None = None
    policy_document: dict[str, Any] | None = None
    approvals: list[Approval] | None = None


class Intent(Open):
    chain_id: int
    from_: str = Field(alias="from")
    to: str
    asset: str = Field(description='"ETH" or the token contract address.')
    amount: str


class ApprovalRequest(Open):
    transaction: Transaction
    statement: str = Field(description="Hex bytes the approver signs; recompute it from the fields before signing.")
    org: str
    key_id: str | None = None
    path: str | None = None
    intent: Intent | None = None
    policy_digest: str | None = None


class Explanation(Open):
    policy_version: int


class Policy(Open):
    version: int
    document: dict[str, Any]
    digest: str
    transaction_id: str | None
    created_at: str


class Deposit(Open):
    id: str
    vault_id: str
    address_id: str
    asset: str | None
    tx_hash: str
    log_index: int
    block_number: int
    sender: str
    amount: str
    state: str
    created_at: str


class AuditEvent(Open):
    index: int


class AuditDocument(Open):
    """A signed tree head, or an inclusion or consistency proof (RFC 9162), as docs/api.md describes."""
