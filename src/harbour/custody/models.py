"""The custody domain as tables (SQLAlchemy 2 typed mappings).

Identifiers are random UUID strings, so an id reveals nothing about how many
organisations or transactions exist. Amounts are :class:`Amount` (exact integers
in base units); timestamps are UTC. The transaction state machine itself lives
in :mod:`harbour.custody.states`; this module only stores the state.

An organisation's governance log (:class:`GovernanceEntry`) is the source of
who its users are, what they may do, its policy, address book, assets and vault
keys. The tables ``users``, ``credentials`` (an admin's), ``policies``,
``address_book``, ``vaults`` and ``assets`` are projections of it, written only
when an entry lands (:mod:`harbour.custody.projection`), for listing and joins;
decisions read the verified log (:mod:`harbour.custody.ledger`), never them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from harbour.custody.db import Amount, Base, UtcDateTime


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    genesis: Mapped[str] = mapped_column(String(64))
    """Hex hash of the organisation's genesis entry: its log is replayed from the entry with this hash only."""
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class GovernanceEntry(Base):
    """One entry of an organisation's governance log, as its admins signed it (:mod:`harbour.governance.log`)."""

    __tablename__ = "governance_entries"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    """Hex :func:`harbour.governance.log.entry_hash` of the entry's bytes (checked again on every replay)."""
    data: Mapped[bytes] = mapped_column(LargeBinary)
    """The :class:`harbour.governance.log.SignedEntry` encoding: the entry's bytes and the signatures that made it."""
    transaction_id: Mapped[str | None] = mapped_column(ForeignKey("transactions.id"))
    """The governance transaction that proposed it (None for the genesis)."""
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("org_id", "name"), UniqueConstraint("org_id", "approval_key"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    roles: Mapped[list[str]] = mapped_column(JSON)
    approval_key: Mapped[str | None] = mapped_column(String(64))
    """Hex Ed25519 public key the user signs approvals with (approvers and admins)."""
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Credential(Base):
    """An API credential: the token is ``hbk_<id>_<secret>``; only SHA-256(secret) is stored.

    An admin's credentials come from the governance log (``credential.issue``);
    anyone else's are issued by an admin directly.
    """

    __tablename__ = "credentials"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # Its terms (harbour.governance.credential_terms); an admin's are copied from the log's change.
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["full"])
    allow: Mapped[list[str]] = mapped_column(JSON, default=list)
    """CIDR blocks a request may come from; empty: anywhere."""
    signing_key: Mapped[str | None] = mapped_column(String(64))
    """Hex Ed25519 public key every request must be signed with, if any."""


class Vault(Base):
    """An MPC key on a set of signer nodes; custody knows only its public half."""

    __tablename__ = "vaults"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(128), unique=True)
    scheme: Mapped[str] = mapped_column(String(32))
    threshold: Mapped[int] = mapped_column(Integer)
    nodes: Mapped[list[str]] = mapped_column(JSON)
    """Node names, in party order."""
    public_key: Mapped[str] = mapped_column(String(130))
    chain_code: Mapped[str] = mapped_column(String(64))
    next_index: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    archived_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    """When ``vault.archive`` landed: no new withdrawal or address since."""


class Address(Base):
    """A wallet address: the HD child ``m/<index>`` of the vault key (public derivation)."""

    __tablename__ = "addresses"
    __table_args__ = (UniqueConstraint("vault_id", "index"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    vault_id: Mapped[str] = mapped_column(ForeignKey("vaults.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(42), unique=True)
    label: Mapped[str | None] = mapped_column(String(128))
    next_nonce: Mapped[int] = mapped_column(BigInteger, default=0)
    """The nonce the next withdrawal from this address gets; assigned under a row lock."""
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Asset(Base):
    __tablename__ = "assets"
    __table_args__ = (UniqueConstraint("org_id", "symbol"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    symbol: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(8))
    """``native`` (ETH) or ``erc20``."""
    contract: Mapped[str | None] = mapped_column(String(42))
    decimals: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    """``asset.disable`` landed (and no ``asset.enable`` since): no withdrawal of it."""


class AddressBookEntry(Base):
    """An address-book entry; a removed one stays (withdrawals name it) with ``removed_at`` set.

    No unique address per organisation here: the governance state refuses a
    second live entry for an address, and a removed entry's address may return.
    """

    __tablename__ = "address_book"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    address: Mapped[str] = mapped_column(String(42))
    whitelisted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    removed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Transaction(Base):
    """A withdrawal or a governance change, with everything needed to finish it after a restart."""

    __tablename__ = "transactions"
    __table_args__ = (
        UniqueConstraint("org_id", "idempotency_key"),
        # One transaction per nonce of an address, apart from the replacements of a stuck one (same nonce).
        Index(
            "uq_transactions_source_address_id_nonce",
            "source_address_id",
            "nonce",
            unique=True,
            sqlite_where=text("replaces_id IS NULL"),
            postgresql_where=text("replaces_id IS NULL"),
        ),
        UniqueConstraint("org_id", "external_id"),
        Index("ix_transactions_state", "state"),
        # searches (harbour.custody.search): each filter within an organisation, in paging order
        Index("ix_transactions_org_created", "org_id", "created_at", "id"),
        Index("ix_transactions_org_vault_created", "org_id", "vault_id", "created_at"),
        Index("ix_transactions_org_state_created", "org_id", "state", "created_at"),
        Index("ix_transactions_org_destination", "org_id", "destination"),
        Index("ix_transactions_org_initiator", "org_id", "initiator_id"),
        Index("ix_transactions_org_updated", "org_id", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    """``withdrawal`` or ``governance``."""
    state: Mapped[str] = mapped_column(String(24))
    initiator_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    initiator_signature: Mapped[str | None] = mapped_column(String(128))
    """The initiator's signature over the withdrawal request (hex), if they signed it (governance/request.py)."""
    note: Mapped[str | None] = mapped_column(String(256))
    external_id: Mapped[str | None] = mapped_column(String(128))
    """The client's own reference for a withdrawal, unique in the organisation (set at submission)."""

    vault_id: Mapped[str | None] = mapped_column(ForeignKey("vaults.id"), index=True)
    source_address_id: Mapped[str | None] = mapped_column(ForeignKey("addresses.id"))
    asset_id: Mapped[str | None] = mapped_column(ForeignKey("assets.id"))
    destination: Mapped[str | None] = mapped_column(String(42))
    address_book_entry_id: Mapped[str | None] = mapped_column(ForeignKey("address_book.id"))
    amount: Mapped[int | None] = mapped_column(Amount)

    policy_version: Mapped[int | None] = mapped_column(Integer)
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    requirement: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    entry: Mapped[bytes | None] = mapped_column(LargeBinary)
    """For a governance change: the proposed entry's bytes, which its admins sign."""
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """For a governance change: what its projection needs beyond the entry (a new vault's public key)."""

    fee_level: Mapped[str | None] = mapped_column(String(8))
    """``slow``, ``normal`` or ``fast`` (custody/fees.py); None when the caps below were given explicitly."""
    max_fee_per_gas: Mapped[int | None] = mapped_column(Amount)
    """The fee cap per gas the initiator gave (wei), if they gave caps instead of a level."""
    max_priority_fee_per_gas: Mapped[int | None] = mapped_column(Amount)
    gas_limit: Mapped[int | None] = mapped_column(BigInteger)
    """The gas limit estimated at submission, which ``max_fee`` was fixed with."""
    max_fee: Mapped[int | None] = mapped_column(Amount)
    """The most it may pay in fees (wei), fixed at submission: in what its approvers sign, checked by the nodes."""
    replaces_id: Mapped[str | None] = mapped_column(ForeignKey("transactions.id"), index=True)
    """For a speed-up or a cancel: the stuck transaction it replaces at the same nonce (custody/replacement.py)."""

    chain_id: Mapped[int | None] = mapped_column(BigInteger)
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    unsigned: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    digest: Mapped[str | None] = mapped_column(String(64))
    raw: Mapped[str | None] = mapped_column(Text)
    tx_hash: Mapped[str | None] = mapped_column(String(66), index=True)
    signers: Mapped[list[int] | None] = mapped_column(JSON)
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    fee: Mapped[int | None] = mapped_column(Amount)
    delivered: Mapped[int | None] = mapped_column(Amount)
    """For a confirmed token withdrawal: what the token's Transfer events say reached the destination."""
    sweep: Mapped[bool] = mapped_column(Boolean, default=False)
    """A sweep: a withdrawal from a deposit address to its vault's main address (custody/sweep.py)."""
    error: Mapped[str | None] = mapped_column(Text)
    sub_status: Mapped[str | None] = mapped_column(String(32))
    """Why it stopped or waits, as a code from :mod:`harbour.custody.outcomes`; ``error`` says it in words."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)

    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    broadcast_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class Approval(Base):
    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("transaction_id", "approver_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    transaction_id: Mapped[str] = mapped_column(ForeignKey("transactions.id"), index=True)
    approver_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    decision: Mapped[str] = mapped_column(String(8))
    """``approve`` or ``reject``."""
    public_key: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    """An approval still waiting at this time stops counting (Settings.approval_lifetime after it was given)."""
    expired: Mapped[bool] = mapped_column(Boolean, default=False)
    """Set, with an audit event, once the service noticed the approval expired."""
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Policy(Base):
    """One version of an organisation's policy (a projection of the log's ``policy`` changes)."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("org_id", "version"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    """The governance entry that put it in force."""
    transaction_id: Mapped[str | None] = mapped_column(ForeignKey("transactions.id"))
    """The governance transaction that proposed it (None for the genesis policy)."""
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Deposit(Base):
    __tablename__ = "deposits"
    __table_args__ = (UniqueConstraint("tx_hash", "log_index", "address_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    vault_id: Mapped[str] = mapped_column(ForeignKey("vaults.id"), index=True)
    address_id: Mapped[str] = mapped_column(ForeignKey("addresses.id"))
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id"))
    tx_hash: Mapped[str] = mapped_column(String(66))
    log_index: Mapped[int] = mapped_column(Integer)
    """-1 for a plain ETH transfer, else the log's index in its block."""
    block_number: Mapped[int] = mapped_column(BigInteger)
    sender: Mapped[str] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(Amount)
    state: Mapped[str] = mapped_column(String(16))
    """``pending`` until the confirmation depth is reached, then ``confirmed``."""
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class ChainCursor(Base):
    """How far the deposit scanner has read, so a restart neither misses nor repeats a block."""

    __tablename__ = "chain_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    block: Mapped[int] = mapped_column(BigInteger)


class RequestNonce(Base):
    """A signed API request's nonce, kept while its timestamp could still pass (:mod:`harbour.custody.requestnonces`).

    The primary key (credential, nonce) is the replay check: a second insert of the
    same credential's nonce fails, in whichever service process it is tried.
    """

    __tablename__ = "request_nonces"

    credential_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
