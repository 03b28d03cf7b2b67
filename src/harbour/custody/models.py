"""The custody domain as tables (SQLAlchemy 2 typed mappings).

Identifiers are random UUID strings, so an id reveals nothing about how many
organisations or transactions exist. Amounts are :class:`Amount` (exact integers
in base units); timestamps are UTC. The transaction state machine itself lives
in :mod:`harbour.custody.states`; this module only stores the state.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
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
    """An API credential: the token is ``hbk_<id>_<secret>``; only SHA-256(secret) is stored."""

    __tablename__ = "credentials"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


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


class AddressBookEntry(Base):
    __tablename__ = "address_book"
    __table_args__ = (UniqueConstraint("org_id", "address"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    address: Mapped[str] = mapped_column(String(42))
    whitelisted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Transaction(Base):
    """A withdrawal or a policy change, with everything needed to finish it after a restart."""

    __tablename__ = "transactions"
    __table_args__ = (
        UniqueConstraint("org_id", "idempotency_key"),
        UniqueConstraint("source_address_id", "nonce"),
        Index("ix_transactions_state", "state"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    """``withdrawal`` or ``policy_change``."""
    state: Mapped[str] = mapped_column(String(24))
    initiator_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(256))

    vault_id: Mapped[str | None] = mapped_column(ForeignKey("vaults.id"), index=True)
    source_address_id: Mapped[str | None] = mapped_column(ForeignKey("addresses.id"))
    asset_id: Mapped[str | None] = mapped_column(ForeignKey("assets.id"))
    destination: Mapped[str | None] = mapped_column(String(42))
    address_book_entry_id: Mapped[str | None] = mapped_column(ForeignKey("address_book.id"))
    amount: Mapped[int | None] = mapped_column(Amount)

    policy_version: Mapped[int | None] = mapped_column(Integer)
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    requirement: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    policy_document: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """For a policy change: the proposed document."""

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
    error: Mapped[str | None] = mapped_column(Text)
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
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class Policy(Base):
    """One version of an organisation's policy; the highest version is in force."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("org_id", "version"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(64))
    transaction_id: Mapped[str | None] = mapped_column(ForeignKey("transactions.id"))
    """The policy-change transaction that approved it (None for the initial policy)."""
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
