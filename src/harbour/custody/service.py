"""The custody service: organisations, vaults, withdrawals, approvals and policy.

Every public method takes the authenticated :class:`Actor`, checks the role,
validates its input, and does its writes in one database transaction together
with the audit events that record them, so a state change and its audit entry
commit or vanish together. Signing, broadcasting and confirmation happen in
:mod:`harbour.custody.pipeline`; this module only moves a withdrawal as far as
``approved`` and hands it over.

Custody never holds key material: a vault is a key id on the signer nodes and
its public key; a withdrawal reaches the nodes only as an approval certificate
that carries the approvers' own signatures, which each node re-checks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from harbour.chains.eip1559 import TransactionError, parse_address
from harbour.chains.ethereum import address_from_public_key, checksum_address
from harbour.chains.evm import EvmClient
from harbour.custody import models as m
from harbour.custody import policy as pol
from harbour.custody import statements, states, views
from harbour.custody.audit import AuditLog
from harbour.custody.errors import Conflict, CustodyError, Forbidden, Invalid, NotFound, Unauthorized, Unavailable
from harbour.custody.signer import Signer
from harbour.custody.statements import POLICY_APPROVAL_DOMAIN, policy_statement
from harbour.custody.views import Page
from harbour.node import quorum

ROLES: Final = frozenset({"admin", "initiator", "approver", "auditor", "viewer"})
ANYONE: Final = ROLES
TOKEN_PREFIX: Final = "hbk"  # noqa: S105 (a prefix, not a secret)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}")
_SYMBOL = re.compile(r"[A-Z0-9]{1,16}")
_IDEMPOTENCY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_HEX_KEY = re.compile(r"[0-9a-f]{64}")
_HEX_SIGNATURE = re.compile(r"[0-9a-f]{128}")
ETH_TRANSFER_GAS: Final = 21_000
TOKEN_GAS_RESERVE: Final = 100_000
"""Gas reserved for a token transfer until it is built (and estimated)."""
MAX_NOTE: Final = 256


@dataclass(frozen=True)
class Actor:
    user_id: str
    org_id: str
    name: str
    roles: frozenset[str]


def _require(actor: Actor, *roles: str) -> None:
    if not actor.roles & set(roles):
        held = ", ".join(sorted(actor.roles)) or "none"
        raise Forbidden(f"this needs one of the roles {', '.join(sorted(roles))}; {actor.name} has {held}")


def _name(value: object, what: str = "name") -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise Invalid(f"{what} must be 1-128 letters, digits, spaces or ._- (starting with a letter or digit)")
    return value


def _address(value: object, what: str = "address") -> str:
    if not isinstance(value, str):
        raise Invalid(f"{what} must be a string")
    try:
        return checksum_address(parse_address(value))
    except TransactionError as exc:
        raise Invalid(f"{what}: {exc}") from None


def _amount(value: object) -> int:
    if type(value) is not int or value <= 0 or value >= 2**256:
        raise Invalid("amount must be a positive integer in base units (below 2^256)")
    return value


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Settings:
    confirmations: int = 1
    policy_quorum: int = 1
    """Admins other than the proposer who must approve a policy change."""
    gas_headroom: int = 2
    """An ETH withdrawal reserves ``gas_limit * max_fee`` times this, so a fee rise cannot overdraw."""


@dataclass(frozen=True)
class Funds:
    """A source address as the chain saw it at one block, read before a write transaction begins."""

    block: int
    nonce: int
    asset: int
    """Balance of the asset withdrawn (wei for ETH, base units for a token)."""
    native: int
    max_fee: int
    """Today's fee cap, for reserving the fees of withdrawals not built yet."""


MAX_CACHED_SOURCES = 10_000
T = TypeVar("T")


@dataclass
class _Write:
    """One caller's work in a group commit, and what became of it."""

    work: Callable[[Session], Any]
    done: bool = False
    result: Any = None
    error: Exception | None = None


MAX_CACHED_POLICIES = 1_000


class Custody:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        chain: EvmClient,
        signer: Signer,
        audit: AuditLog,
        settings: Settings | None = None,
        *,
        clock: Callable[[], dt.datetime] = _now,
        readers: sessionmaker[Session] | None = None,
    ) -> None:
        self.sessions = sessions
        self.readers = readers or sessions
        self.chain = chain
        self.signer = signer
        self.audit = audit
        self.settings = settings or Settings()
        self.clock = clock
        bind = sessions.kw.get("bind")
        self._group_commit = bind is not None and bind.dialect.name == "sqlite"
        self._writer: AbstractContextManager[Any] = threading.Lock() if self._group_commit else nullcontext()
        """SQLite runs one writer at a time. This process's writers queue on this lock, which wakes the next
        one the moment the last commits, rather than in SQLite's busy handler, which polls with sleeps of up
        to 100 ms; other processes (the CLI) still meet the busy timeout."""
        self.on_approved: Callable[[str], None] = lambda tx_id: None
        """Set by the pipeline: called after commit with the id of a withdrawal that became approved."""
        # (org, vault, asset symbol) -> (source address, token contract): what a submission reads the chain for
        # before it takes the write lock; checked again under the lock, so a stale entry is refused, not used.
        self._sources: dict[tuple[str, str, str], tuple[str, str | None]] = {}
        self._policies: dict[tuple[str, str], pol.Policy] = {}  # (policy row id, digest) -> parsed
        self._waiting: list[_Write] = []  # work queued for the next group commit (SQLite)
        self._waiting_lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._writer, self.sessions() as session, session.begin():  # the one writer path
            yield session

    def _write(self, work: Callable[[Session], T]) -> T:
        """``work(session)`` in a write transaction; returns its result once committed, or raises what it raised.

        On SQLite, writers that queue for the write lock at the same time share one
        transaction (group commit): whoever gets the lock runs every piece of work
        queued by then, each in its own SAVEPOINT, and commits once. Work that raises
        is rolled back to its savepoint alone and its caller gets the exception; if the
        commit fails, every caller gets that error and nothing was written. Either way a
        caller returns only after the outcome of its own work is durable. One commit,
        one fsync and one hand-over of the lock for a whole queue is what keeps a busy
        service's writers from waiting in line for each other. On PostgreSQL, which
        runs writers concurrently under row locks, each call is its own transaction.
        """
        if not self._group_commit:
            with self._tx() as s:
                return work(s)
        item = _Write(work)
        with self._waiting_lock:
            self._waiting.append(item)
        with self._writer:
            if not item.done:
                with self._waiting_lock:
                    batch, self._waiting = self._waiting, []
                self._commit_group(batch)
        if item.error is not None:
            raise item.error
        return cast(T, item.result)

    def _commit_group(self, batch: list[_Write]) -> None:
        """Run ``batch`` in one transaction, each item in a savepoint; hold the write lock."""
        try:
            with self.sessions() as s, s.begin():
                for item in batch:
                    try:
                        with s.begin_nested():
                            item.result = item.work(s)
                    except Exception as exc:  # this item alone is rolled back; its caller gets the exception
                        item.result, item.error = None, exc
                        self.audit.forget_state(s)  # its events were rolled back with it
        except BaseException as exc:  # BEGIN or COMMIT failed (or an interrupt): nothing in the batch was written
            for item in batch:
                if item.error is None:
                    item.result, item.error = None, exc if isinstance(exc, Exception) else Unavailable(repr(exc))
            if not isinstance(exc, Exception):
                raise
        finally:
            for item in batch:
                item.done = True

    def funds(self, address: str, token: str | None, max_fee: int | None = None) -> Funds:
        """What ``address`` holds (of ``token``, an ERC-20 contract, or ETH if None) and its nonce, at one block.

        Read before the write transaction that checks a withdrawal against it, so that
        no other writer waits on these round trips; :meth:`_shortfall` says why that is sound.
        """
        block = self.chain.block_number()
        native = self.chain.balance(address, block)
        held = native if token is None else self.chain.token_balance(token, address, block)
        if max_fee is None:
            max_fee, _ = self.chain.fees()
        return Funds(block, self.chain.nonce(address, block), held, native, max_fee)

    def _read(self) -> Session:
        """A session for reading only: on SQLite it does not take the write lock (see db.readonly)."""
        return self.readers()

    def _event(self, s: Session, actor: Actor | None, kind: str, subject: str | None, /, **data: Any) -> None:
        self.audit.append(
            s,
            org_id=actor.org_id if actor else data.pop("org_id", None),
            actor_id=actor.user_id if actor else None,
            kind=kind,
            subject=subject,
            data=data,
        )

    def _get(self, s: Session, model: type[Any], row_id: str, org_id: str, what: str) -> Any:
        if not isinstance(row_id, str) or len(row_id) > 64:
            raise NotFound(f"no {what} {row_id!r}")
        row = s.get(model, row_id)
        if row is None or getattr(row, "org_id", org_id) != org_id:
            raise NotFound(f"no {what} {row_id}")
        return row

    def _move(self, s: Session, actor: Actor | None, tx: m.Transaction, new: str, **data: Any) -> None:
        states.check(tx.kind, tx.state, new)
        old, tx.state, tx.updated_at = tx.state, new, self.clock()
        data.setdefault("org_id", tx.org_id)
        self._event(s, actor, f"transaction.{new}", tx.id, previous=old, **data)

    # -- organisations, users and credentials ----------------------------------------------------------

    def _new_token(self, s: Session, user_id: str) -> str:
        secret = secrets.token_bytes(32)
        credential = m.Credential(user_id=user_id, secret_hash=hashlib.sha256(secret).hexdigest())
        s.add(credential)
        s.flush()
        return f"{TOKEN_PREFIX}_{credential.id}_{secret.hex()}"

    def bootstrap(
        self, org: str, admin: str, approval_key: str | None = None, policy: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A new organisation with its first admin and its initial policy (default: deny everything).

        Not reachable through the API: whoever runs it holds the service's
        database, and it is where trust in an organisation starts.
        """
        document = pol.Policy.from_document(policy if policy is not None else {"rules": []})
        key = self._approval_key(approval_key)
        with self._tx() as s:
            if s.scalar(select(m.Organisation).where(m.Organisation.name == _name(org, "organisation"))):
                raise Conflict(f"organisation {org!r} exists")
            organisation = m.Organisation(name=org)
            s.add(organisation)
            s.flush()
            user = m.User(org_id=organisation.id, name=_name(admin, "user name"), roles=["admin"], approval_key=key)
            s.add(user)
            s.flush()
            token = self._new_token(s, user.id)
            s.add(
                m.Policy(org_id=organisation.id, version=1, document=document.to_document(), digest=document.digest())
            )
            actor = Actor(user.id, organisation.id, user.name, frozenset(user.roles))
            self._event(s, actor, "organisation.created", organisation.id, name=org)
            self._event(s, actor, "user.created", user.id, name=admin, roles=["admin"], approval_key=key)
            self._event(s, actor, "policy.activated", organisation.id, version=1, digest=document.digest())
            return {"organisation": views.organisation(organisation), "user": views.user(user), "token": token}

    def authenticate(self, token: str) -> Actor:
        parts = token.split("_") if isinstance(token, str) else []
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[2]) != 64:
            raise Unauthorized("the credential is malformed; expected hbk_<id>_<secret>")
        try:
            secret = bytes.fromhex(parts[2])
        except ValueError:
            raise Unauthorized("the credential is malformed; expected hbk_<id>_<secret>") from None
        with self._read() as s:
            credential = s.get(m.Credential, parts[1][:36])
            expected = credential.secret_hash if credential is not None else "0" * 64
            ok = hmac.compare_digest(hashlib.sha256(secret).hexdigest(), expected)
            if credential is None or not ok or credential.revoked_at is not None:
                raise Unauthorized("unknown or revoked credential")
            user = s.get(m.User, credential.user_id)
            if user is None or user.disabled:
                raise Unauthorized("the credential's user is disabled")
            return Actor(user.id, user.org_id, user.name, frozenset(user.roles))

    def organisation(self, actor: Actor) -> dict[str, Any]:
        with self._read() as s:
            return views.organisation(self._get(s, m.Organisation, actor.org_id, actor.org_id, "organisation"))

    @staticmethod
    def _approval_key(value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not _HEX_KEY.fullmatch(value):
            raise Invalid("approval_key must be a 32-byte Ed25519 public key in lower-case hex")
        try:
            quorum.check_public_key(bytes.fromhex(value))
        except ValueError as exc:  # includes small-order points, under which signatures can be forged
            raise Invalid(f"approval_key is not usable: {exc}") from None
        return value

    def create_user(
        self, actor: Actor, *, name: str, roles: list[str], approval_key: str | None = None
    ) -> dict[str, Any]:
        _require(actor, "admin")
        if not isinstance(roles, list) or not roles or not all(isinstance(r, str) and r in ROLES for r in roles):
            raise Invalid(f"roles must be a non-empty list drawn from {', '.join(sorted(ROLES))}")
        key = self._approval_key(approval_key)
        if {"approver", "admin"} & set(roles) and key is None:
            raise Invalid("approvers and admins sign approvals: give their approval_key")
        with self._tx() as s:
            user = m.User(
                org_id=actor.org_id, name=_name(name, "user name"), roles=sorted(set(roles)), approval_key=key
            )
            s.add(user)
            try:
                s.flush()
            except IntegrityError:
                raise Conflict(f"a user named {name!r} or with that approval key exists") from None
            self._event(s, actor, "user.created", user.id, name=name, roles=user.roles, approval_key=key)
            return views.user(user)

    def issue_credential(self, actor: Actor, user_id: str) -> dict[str, Any]:
        _require(actor, "admin")
        with self._tx() as s:
            user = self._get(s, m.User, user_id, actor.org_id, "user")
            if user.disabled:
                raise Conflict(f"user {user.name} is disabled")
            token = self._new_token(s, user.id)
            self._event(s, actor, "credential.issued", user.id, credential_id=token.split("_")[1])
            return {"user_id": user.id, "token": token}

    def disable_user(self, actor: Actor, user_id: str) -> dict[str, Any]:
        """Disable a user and revoke every credential they hold; their recorded approvals stay as they were."""
        _require(actor, "admin")
        if user_id == actor.user_id:
            raise Conflict("an admin cannot disable themselves; another admin must")
        with self._tx() as s:
            user = self._get(s, m.User, user_id, actor.org_id, "user")
            s.refresh(user, with_for_update=True)
            if user.disabled:
                raise Conflict(f"user {user.name} is disabled already")
            user.disabled = True
            now = self.clock()
            revoked = 0
            for credential in s.scalars(
                select(m.Credential).where(m.Credential.user_id == user.id, m.Credential.revoked_at.is_(None))
            ):
                credential.revoked_at = now
                revoked += 1
            self._event(s, actor, "user.disabled", user.id, credentials_revoked=revoked)
            return views.user(user)

    def revoke_credential(self, actor: Actor, credential_id: str) -> dict[str, Any]:
        """Revoke one API credential: its owner may, and so may an admin of the organisation."""
        _require(actor, *ANYONE)
        with self._tx() as s:
            credential = s.get(m.Credential, credential_id) if isinstance(credential_id, str) else None
            owner = s.get(m.User, credential.user_id) if credential is not None else None
            if credential is None or owner is None or owner.org_id != actor.org_id:
                raise NotFound(f"no credential {credential_id!r}")
            if owner.id != actor.user_id and "admin" not in actor.roles:
                raise Forbidden("only the credential's owner or an admin can revoke it")
            if credential.revoked_at is not None:
                raise Conflict("the credential is revoked already")
            credential.revoked_at = self.clock()
            self._event(s, actor, "credential.revoked", owner.id, credential_id=credential.id)
            return {"credential_id": credential.id, "user_id": owner.id, "revoked": True}

    def list_users(self, actor: Actor, page: Page) -> dict[str, Any]:
        _require(actor, *ANYONE)
        with self._read() as s:
            rows, cursor = views.paginate(s, select(m.User).where(m.User.org_id == actor.org_id), m.User, page)
            return {"items": [views.user(u) for u in rows], "next_cursor": cursor}

    # -- vaults, addresses, assets, address book --------------------------------------------------------

    def create_vault(
        self, actor: Actor, *, name: str, threshold: int = 2, nodes: list[str] | None = None
    ) -> dict[str, Any]:
        """Generate the vault's key on the signer nodes (ECDSA, DKLs23) and record its public half."""
        _require(actor, "admin")
        _name(name, "vault name")
        try:
            members = [self.signer.node(n) for n in nodes] if nodes else list(self.signer.nodes)
        except KeyError as exc:
            raise Invalid(f"unknown signer node {exc.args[0]!r}") from None
        if not members:
            raise Conflict("no signer nodes are configured (custody.json: nodes)")
        if len({d.node_id for d in members}) != len(members):
            raise Invalid("a node is listed twice")
        if type(threshold) is not int or not 2 <= threshold <= len(members):
            raise Invalid(f"threshold must be 2..{len(members)} (a 1-of-n key is a single point of failure)")
        with self._read() as s:
            if s.scalar(select(m.Vault).where(m.Vault.org_id == actor.org_id, m.Vault.name == name)):
                raise Conflict(f"vault {name!r} exists")
        key_id = f"vault-{secrets.token_hex(8)}"
        try:
            key = self.signer.keygen(key_id, threshold, members)
        except Exception as exc:
            raise Unavailable(f"key generation on the signer nodes failed: {exc}") from exc
        with self._tx() as s:
            vault = m.Vault(
                org_id=actor.org_id,
                name=name,
                key_id=key_id,
                scheme=key.scheme,
                threshold=threshold,
                nodes=[d.name for d in members],
                public_key=key.public.group_public_key.encode().hex(),
                chain_code=key.chain_code.hex(),
            )
            s.add(vault)
            try:
                s.flush()
            except IntegrityError:
                raise Conflict(f"vault {name!r} exists") from None
            self._event(
                s,
                actor,
                "vault.created",
                vault.id,
                name=name,
                key_id=key_id,
                threshold=threshold,
                nodes=vault.nodes,
                public_key=vault.public_key,
            )
            return views.vault(vault)

    def list_vaults(self, actor: Actor, page: Page) -> dict[str, Any]:
        _require(actor, *ANYONE)
        with self._read() as s:
            rows, cursor = views.paginate(s, select(m.Vault).where(m.Vault.org_id == actor.org_id), m.Vault, page)
            return {"items": [views.vault(v) for v in rows], "next_cursor": cursor}

    def get_vault(self, actor: Actor, vault_id: str) -> dict[str, Any]:
        """The vault with each address's on-chain balance of every asset (at the latest block)."""
        _require(actor, *ANYONE)
        with self._read() as s:
            vault = self._get(s, m.Vault, vault_id, actor.org_id, "vault")
            addresses = list(
                s.scalars(select(m.Address).where(m.Address.vault_id == vault.id).order_by(m.Address.index))
            )
            assets = list(s.scalars(select(m.Asset).where(m.Asset.org_id == actor.org_id).order_by(m.Asset.symbol)))
            out = views.vault(vault)
        balances: dict[str, int] = {a.symbol: 0 for a in assets}
        items = []
        for addr in addresses:
            row = views.address(addr)
            row["balances"] = {}
            for asset in assets:
                value = self._balance(asset, addr.address)
                row["balances"][asset.symbol] = str(value)
                balances[asset.symbol] += value
            items.append(row)
        out["addresses"] = items
        out["balances"] = {k: str(v) for k, v in balances.items()}
        return out

    def _balance(self, asset: m.Asset, address: str, block: int | str = "latest") -> int:
        if asset.kind == "native":
            return self.chain.balance(address, block)
        assert asset.contract is not None
        return self.chain.token_balance(asset.contract, address, block)

    def derive_address(self, actor: Actor, vault_id: str, *, label: str | None = None) -> dict[str, Any]:
        """The vault key's next non-hardened child ``m/<i>``, derived from public data only (BIP-32)."""
        _require(actor, "admin")
        if label is not None:
            _name(label, "label")
        with self._tx() as s:
            vault = self._get(s, m.Vault, vault_id, actor.org_id, "vault")
            s.refresh(vault, with_for_update=True)
            index = vault.next_index
            path = f"m/{index}"
            point = self.signer.child_public_key(vault.key_id, path)
            address = address_from_public_key(point)
            row = m.Address(
                vault_id=vault.id,
                index=index,
                path=path,
                address=address,
                label=label,
                next_nonce=self.chain.nonce(address, "latest"),
            )
            vault.next_index = index + 1
            s.add(row)
            s.flush()
            self._event(s, actor, "address.derived", row.id, vault_id=vault.id, path=path, address=address)
            return views.address(row)

    def list_addresses(self, actor: Actor, vault_id: str, page: Page) -> dict[str, Any]:
        _require(actor, *ANYONE)
        with self._read() as s:
            vault = self._get(s, m.Vault, vault_id, actor.org_id, "vault")
            rows, cursor = views.paginate(s, select(m.Address).where(m.Address.vault_id == vault.id), m.Address, page)
            return {"items": [views.address(a) for a in rows], "next_cursor": cursor}

    def add_asset(
        self, actor: Actor, *, symbol: str, kind: str, contract: str | None = None, decimals: int = 18
    ) -> dict[str, Any]:
        _require(actor, "admin")
        if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
            raise Invalid("symbol must be 1-16 upper-case letters or digits")
        if kind not in ("native", "erc20"):
            raise Invalid("kind must be native or erc20")
        if (kind == "erc20") != (contract is not None):
            raise Invalid("an erc20 asset names its contract; the native asset has none")
        if type(decimals) is not int or not 0 <= decimals <= 36:
            raise Invalid("decimals must be an integer in 0..36")
        if kind == "native" and decimals != 18:
            raise Invalid("ETH has 18 decimals")
        checked = _address(contract, "contract") if contract is not None else None
        with self._tx() as s:
            if kind == "native" and s.scalar(
                select(m.Asset).where(m.Asset.org_id == actor.org_id, m.Asset.kind == "native")
            ):
                raise Conflict("the native asset is registered already")
            row = m.Asset(org_id=actor.org_id, symbol=symbol, kind=kind, contract=checked, decimals=decimals)
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                raise Conflict(f"asset {symbol} exists") from None
            self._event(s, actor, "asset.added", row.id, symbol=symbol, kind=kind, contract=checked, decimals=decimals)
            return views.asset(row)

    def list_assets(self, actor: Actor, page: Page) -> dict[str, Any]:
        _require(actor, *ANYONE)
        with self._read() as s:
            rows, cursor = views.paginate(s, select(m.Asset).where(m.Asset.org_id == actor.org_id), m.Asset, page)
            return {"items": [views.asset(a) for a in rows], "next_cursor": cursor}

    def add_address_book_entry(
        self, actor: Actor, *, name: str, address: str, whitelisted: bool = False
    ) -> dict[str, Any]:
        _require(actor, "admin")
        _name(name)
        checked = _address(address)
        if type(whitelisted) is not bool:
            raise Invalid("whitelisted must be true or false")
        with self._tx() as s:
            row = m.AddressBookEntry(
                org_id=actor.org_id, name=name, address=checked, whitelisted=whitelisted, created_by=actor.user_id
            )
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                raise Conflict(f"{checked} is in the address book already") from None
            self._event(s, actor, "address_book.added", row.id, name=name, address=checked, whitelisted=whitelisted)
            return views.address_book_entry(row)

    def list_address_book(self, actor: Actor, page: Page) -> dict[str, Any]:
        _require(actor, *ANYONE)
        with self._read() as s:
            stmt = select(m.AddressBookEntry).where(m.AddressBookEntry.org_id == actor.org_id)
            rows, cursor = views.paginate(s, stmt, m.AddressBookEntry, page)
            return {"items": [views.address_book_entry(e) for e in rows], "next_cursor": cursor}

    # -- withdrawals ------------------------------------------------------------------------------------

    def _policy(self, s: Session, org_id: str) -> tuple[m.Policy, pol.Policy]:
        row = s.scalar(select(m.Policy).where(m.Policy.org_id == org_id).order_by(m.Policy.version.desc()).limit(1))
        if row is None:
            raise Conflict("the organisation has no policy")
        parsed = self._policies.get((row.id, row.digest))
        if parsed is None:  # a version never changes: parse each once
            parsed = pol.Policy.from_document(row.document)
            if len(self._policies) >= MAX_CACHED_POLICIES:
                self._policies.clear()
            self._policies[(row.id, row.digest)] = parsed
        return row, parsed

    def _facts(self, s: Session, actor: Actor, vault: m.Vault, asset: m.Asset, to: str, amount: int) -> pol.TxFacts:
        entry = s.scalar(
            select(m.AddressBookEntry).where(
                m.AddressBookEntry.org_id == actor.org_id, m.AddressBookEntry.address == to
            )
        )
        return pol.TxFacts(
            initiator_id=actor.user_id,
            initiator_roles=actor.roles,
            vault_id=vault.id,
            asset=asset.symbol,
            destination=to,
            address_book_entry=entry.id if entry else None,
            whitelisted=bool(entry and entry.whitelisted),
            amount=amount,
            at=self.clock(),
        )

    def _history(
        self, s: Session, org_id: str, policy: pol.Policy, at: dt.datetime, exclude: str | None = None
    ) -> list[pol.PastTx]:
        window = policy.max_window_seconds()
        if window == 0:
            return []
        since = at - dt.timedelta(seconds=window)
        rows = s.execute(
            select(m.Transaction, m.Asset.symbol)
            .join(m.Asset, m.Asset.id == m.Transaction.asset_id)
            .where(
                m.Transaction.org_id == org_id,
                m.Transaction.kind == "withdrawal",
                m.Transaction.created_at > since,
                m.Transaction.state.not_in([states.REJECTED, states.CANCELLED, states.FAILED]),
                m.Transaction.id != (exclude or ""),
                m.Transaction.vault_id.is_not(None),
                m.Transaction.destination.is_not(None),
                m.Transaction.amount.is_not(None),
            )
        )
        return [
            pol.PastTx(
                initiator_id=t.initiator_id,
                vault_id=t.vault_id or "",
                asset=symbol,
                destination=t.destination or "",
                amount=t.amount or 0,
                at=t.created_at,
            )
            for t, symbol in rows
        ]

    def _lookup(
        self, s: Session, actor: Actor, vault_id: str, asset_symbol: str, *, lock: bool = False
    ) -> tuple[m.Vault, m.Asset, m.Address]:
        """The vault, the asset by symbol and the vault's first address (with ``lock``: row-locked, FOR UPDATE)."""
        vault = self._get(s, m.Vault, vault_id, actor.org_id, "vault")
        if not isinstance(asset_symbol, str):
            raise Invalid("asset must be a symbol")
        asset = s.scalar(select(m.Asset).where(m.Asset.org_id == actor.org_id, m.Asset.symbol == asset_symbol))
        if asset is None:
            raise NotFound(f"no asset {asset_symbol!r}")
        query = select(m.Address).where(m.Address.vault_id == vault.id, m.Address.index == 0)
        source = s.scalar(query.with_for_update() if lock else query)
        if source is None:
            raise Conflict("the vault has no address yet: derive one first")
        return vault, asset, source

    def explain(self, actor: Actor, *, vault_id: str, asset: str, to: str, amount: int) -> dict[str, Any]:
        """Dry-run: what the policy would decide for this withdrawal, and why. Nothing is written."""
        _require(actor, "initiator", "admin", "approver", "auditor")
        to, amount = _address(to, "destination"), _amount(amount)
        with self._read() as s:
            vault, asset_row, _ = self._lookup(s, actor, vault_id, asset)
            row, policy = self._policy(s, actor.org_id)
            facts = self._facts(s, actor, vault, asset_row, to, amount)
            decision = pol.explain(policy, facts, self._history(s, actor.org_id, policy, facts.at))
            return {"policy_version": row.version, **decision.to_json()}

    def submit_withdrawal(
        self,
        actor: Actor,
        *,
        vault_id: str,
        asset: str,
        to: str,
        amount: int,
        idempotency_key: str | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        """Record a withdrawal and run it through the policy: approved, pending approval or rejected.

        With an idempotency key, a retried request returns the transaction the
        first one created; the same key with a different request is a conflict.
        """
        _require(actor, "initiator")
        to, amount = _address(to, "destination"), _amount(amount)
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not _IDEMPOTENCY.fullmatch(idempotency_key)
        ):
            raise Invalid("idempotency key must be 1-128 characters of A-Z a-z 0-9 . _ : -")
        if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
            raise Invalid(f"note must be a string of at most {MAX_NOTE} characters")
        request = json.dumps([vault_id, asset, to, str(amount), note], sort_keys=True)
        request_hash = hashlib.sha256(request.encode()).hexdigest()
        if idempotency_key is not None:
            found = self._idempotent(actor, idempotency_key, request_hash)
            if found is not None:
                return found
        try:
            return self._submit(actor, vault_id, asset, to, amount, idempotency_key, request_hash, note)
        except IntegrityError:
            if idempotency_key is None:
                raise
            found = self._idempotent(actor, idempotency_key, request_hash)
            if found is None:
                raise
            return found

    def _idempotent(self, actor: Actor, key: str, request_hash: str) -> dict[str, Any] | None:
        with self._read() as s:
            tx = s.scalar(
                select(m.Transaction).where(m.Transaction.org_id == actor.org_id, m.Transaction.idempotency_key == key)
            )
            if tx is None:
                return None
            if tx.request_hash != request_hash or tx.initiator_id != actor.user_id:
                raise Conflict(f"idempotency key {key!r} was used for a different request")
            return self._view(s, tx)

    def _submit(
        self,
        actor: Actor,
        vault_id: str,
        asset_symbol: str,
        to: str,
        amount: int,
        key: str | None,
        request_hash: str,
        note: str | None,
    ) -> dict[str, Any]:
        cache_key = (actor.org_id or "", vault_id, asset_symbol)
        read = self._sources.get(cache_key) if isinstance(vault_id, str) and isinstance(asset_symbol, str) else None
        if read is None:
            with self._read() as s:
                _, asset, source = self._lookup(s, actor, vault_id, asset_symbol)
                read = source.address, asset.contract if asset.kind != "native" else None
        funds = self.funds(*read)

        def work(s: Session) -> dict[str, Any]:
            # the source row locked: one submission per source at a time, so the balance check holds
            vault, asset, source = self._lookup(s, actor, vault_id, asset_symbol, lock=True)
            if (source.address, asset.contract if asset.kind != "native" else None) != read:
                self._sources.pop(cache_key, None)
                raise Conflict("the vault's address or the asset changed while the withdrawal was submitted; retry")
            if len(self._sources) >= MAX_CACHED_SOURCES:
                self._sources.clear()
            self._sources[cache_key] = read
            now = self.clock()
            tx = m.Transaction(
                org_id=actor.org_id,
                kind="withdrawal",
                state=states.SUBMITTED,
                initiator_id=actor.user_id,
                idempotency_key=key,
                request_hash=request_hash,
                note=note,
                vault_id=vault.id,
                source_address_id=source.id,
                asset_id=asset.id,
                destination=to,
                amount=amount,
                chain_id=self.chain.chain_id,
                created_at=now,
                updated_at=now,
            )
            s.add(tx)
            s.flush()
            # Nothing below reads this row back: one UPDATE at commit, not one before every query.
            with s.no_autoflush:
                self._event(
                    s,
                    actor,
                    "transaction.submitted",
                    tx.id,
                    kind="withdrawal",
                    vault_id=vault.id,
                    source=source.address,
                    asset=asset.symbol,
                    destination=to,
                    amount=str(amount),
                    idempotency_key=key,
                )
                self._move(s, actor, tx, states.PENDING_POLICY)
                row, policy = self._policy(s, actor.org_id)
                facts = self._facts(s, actor, vault, asset, to, amount)
                tx.address_book_entry_id = facts.address_book_entry
                decision = pol.evaluate(policy, facts, self._history(s, actor.org_id, policy, now, exclude=tx.id))
                tx.policy_version = row.version
                tx.decision = decision.to_json()
                if decision.action == "block":
                    tx.error = f"blocked by policy: {decision.rule or 'no rule matched (default deny)'}"
                    self._move(s, actor, tx, states.REJECTED, rule=decision.rule, policy_version=row.version)
                    return views.transaction(tx, [], asset.symbol)  # new: no approvals yet
                shortfall = self._shortfall(s, source, asset, tx, funds)
                if shortfall is not None:
                    tx.error = shortfall
                    self._move(s, actor, tx, states.REJECTED, reason=shortfall)
                    return views.transaction(tx, [], asset.symbol)  # new: no approvals yet
                if decision.action == "allow":
                    self._move(s, actor, tx, states.APPROVED, rule=decision.rule, policy_version=row.version)
                else:
                    assert decision.requirement is not None
                    tx.requirement = decision.requirement.to_json()
                    self._move(
                        s,
                        actor,
                        tx,
                        states.PENDING_APPROVAL,
                        rule=decision.rule,
                        policy_version=row.version,
                        requirement=tx.requirement,
                    )
                return views.transaction(tx, [], asset.symbol)

        view = self._write(work)
        if view["state"] == states.APPROVED:
            self.on_approved(view["id"])
        return view

    def _shortfall(self, s: Session, source: m.Address, asset: m.Asset, tx: m.Transaction, funds: Funds) -> str | None:
        """Why the source cannot pay ``tx`` on top of everything in flight, or None if it can.

        ``funds`` was read at one block, before this transaction began: every withdrawal
        from the source with a nonce below that block's nonce is reflected in its
        balances; every one with a higher nonce is still owed whatever its state now
        (it may have been mined since), and so is every one in flight without a nonce.
        """
        kinds: dict[str, str] = {}
        native: str | None = None
        for asset_id, kind in s.execute(select(m.Asset.id, m.Asset.kind).where(m.Asset.org_id == tx.org_id)):
            kinds[asset_id] = kind
            native = asset_id if kind == "native" else native
        if native is None:
            return "no native asset is registered to pay gas"
        others = s.execute(  # columns, not ORM objects: there may be hundreds in flight, and this runs per write
            select(m.Transaction.asset_id, m.Transaction.amount, m.Transaction.unsigned).where(
                m.Transaction.source_address_id == source.id,
                or_(
                    and_(m.Transaction.nonce.is_(None), m.Transaction.state.in_(states.IN_FLIGHT)),
                    m.Transaction.nonce >= funds.nonce,
                ),
                m.Transaction.id != tx.id,
            )
        )
        owed: dict[str, int] = {asset.id: 0}
        fees = 0
        for asset_id, amount, unsigned in others:
            owed[asset_id or ""] = owed.get(asset_id or "", 0) + (amount or 0)
            fees += self._fee_reserve(asset_id, unsigned, kinds, funds.max_fee)
        fees += self._fee_reserve(tx.asset_id, tx.unsigned, kinds, funds.max_fee)
        need_asset = owed[asset.id] + (tx.amount or 0)
        have_asset, have_native = funds.asset, funds.native
        need_native = fees + (need_asset if asset.kind == "native" else owed.get(native, 0))
        if asset.kind != "native" and have_asset < need_asset:
            return (
                f"insufficient {asset.symbol}: {source.address} holds {have_asset}, "
                f"in-flight withdrawals and this one need {need_asset}"
            )
        if have_native < need_native:
            return (
                f"insufficient ETH: {source.address} holds {have_native}, "
                f"amounts and gas of in-flight withdrawals and this one need {need_native}"
            )
        return None

    def _fee_reserve(
        self, asset_id: str | None, unsigned: dict[str, Any] | None, kinds: dict[str, str], max_fee: int
    ) -> int:
        """The most a withdrawal can pay in fees: as built, or (not built yet) at today's fee with headroom."""
        if unsigned is not None:
            return int(unsigned["gas_limit"]) * int(unsigned["max_fee_per_gas"])
        gas = ETH_TRANSFER_GAS if kinds.get(asset_id or "") == "native" else TOKEN_GAS_RESERVE
        return gas * max_fee * self.settings.gas_headroom

    def _view(self, s: Session, tx: m.Transaction) -> dict[str, Any]:
        approvals = list(
            s.scalars(select(m.Approval).where(m.Approval.transaction_id == tx.id).order_by(m.Approval.created_at))
        )
        symbol = s.scalar(select(m.Asset.symbol).where(m.Asset.id == tx.asset_id)) if tx.asset_id else None
        return views.transaction(tx, approvals, symbol)

    def get_transaction(self, actor: Actor, tx_id: str) -> dict[str, Any]:
        _require(actor, *ANYONE)
        with self._read() as s:
            return self._view(s, self._get(s, m.Transaction, tx_id, actor.org_id, "transaction"))

    def list_transactions(self, actor: Actor, page: Page, state: str | None = None) -> dict[str, Any]:
        _require(actor, *ANYONE)
        if state is not None and state not in states.STATES:
            raise Invalid(f"state must be one of {', '.join(states.STATES)}")
        with self._read() as s:
            stmt = select(m.Transaction).where(m.Transaction.org_id == actor.org_id)
            if state is not None:
                stmt = stmt.where(m.Transaction.state == state)
            rows, cursor = views.paginate(s, stmt, m.Transaction, page)
            return {"items": [self._view(s, t) for t in rows], "next_cursor": cursor}

    # -- approvals --------------------------------------------------------------------------------------

    def intent(self, s: Session, tx: m.Transaction) -> quorum.Intent:
        source = s.get(m.Address, tx.source_address_id)
        asset = s.get(m.Asset, tx.asset_id)
        assert source is not None and asset is not None and tx.chain_id is not None
        assert tx.destination is not None and tx.amount is not None
        return quorum.Intent(
            chain_id=tx.chain_id,
            sender=source.address,
            recipient=tx.destination,
            asset="ETH" if asset.kind == "native" else (asset.contract or ""),
            amount=tx.amount,
        )

    def _subject(self, s: Session, tx: m.Transaction) -> statements.Subject:
        """What the approvers of ``tx`` decide on, from its rows."""
        if tx.kind == statements.POLICY_CHANGE:
            assert tx.policy_document is not None
            digest = pol.Policy.from_document(tx.policy_document).digest()
            return statements.PolicyChangeApproval(org=tx.org_id, transaction_id=tx.id, digest=digest)
        vault = s.get(m.Vault, tx.vault_id)
        source = s.get(m.Address, tx.source_address_id)
        assert vault is not None and source is not None
        return statements.WithdrawalApproval(
            org=tx.org_id, transaction_id=tx.id, key_id=vault.key_id, path=source.path, intent=self.intent(s, tx)
        )

    def approval_request(self, actor: Actor, tx_id: str) -> dict[str, Any]:
        """What an approver signs, with the facts to check it against (the CLI rebuilds the statement itself)."""
        _require(actor, "approver", "admin")
        with self._read() as s:
            tx = self._get(s, m.Transaction, tx_id, actor.org_id, "transaction")
            about = self._subject(s, tx)
            return {
                "transaction": self._view(s, tx),
                "statement": about.statement().hex(),
                "org": tx.org_id,
                **about.request_fields(),
            }

    def approve(self, actor: Actor, tx_id: str, *, signature: str) -> dict[str, Any]:
        return self._decide(actor, tx_id, signature, "approve")

    def reject(self, actor: Actor, tx_id: str, *, signature: str) -> dict[str, Any]:
        return self._decide(actor, tx_id, signature, "reject")

    def _decide(self, actor: Actor, tx_id: str, signature: str, decision: quorum.Decision) -> dict[str, Any]:
        with self._tx() as s:
            tx = self._get(s, m.Transaction, tx_id, actor.org_id, "transaction")
            s.refresh(tx, with_for_update=True)
            _require(actor, "admin" if tx.kind == "policy_change" else "approver")
            if tx.state != states.PENDING_APPROVAL:
                raise Conflict(f"transaction {tx.id} is {tx.state}, not pending approval")
            if tx.initiator_id == actor.user_id:
                raise Forbidden("the initiator of a transaction cannot approve or reject it")
            if s.scalar(
                select(m.Approval).where(m.Approval.transaction_id == tx.id, m.Approval.approver_id == actor.user_id)
            ):
                raise Conflict(f"{actor.name} has already decided on transaction {tx.id}")
            user = s.get(m.User, actor.user_id)
            assert user is not None
            if user.approval_key is None:
                raise Forbidden(f"{actor.name} has no approval key registered")
            about = self._subject(s, tx)
            statement = about.statement(decision)
            if (
                not isinstance(signature, str)
                or not _HEX_SIGNATURE.fullmatch(signature)
                or not about.verifies(bytes.fromhex(user.approval_key), bytes.fromhex(signature), statement)
            ):
                raise Invalid(
                    f"the signature does not verify under {actor.name}'s approval key over this transaction's statement"
                )
            s.add(
                m.Approval(
                    transaction_id=tx.id,
                    approver_id=actor.user_id,
                    decision=decision,
                    public_key=user.approval_key,
                    signature=signature,
                )
            )
            self._event(s, actor, f"approval.{decision}", tx.id, public_key=user.approval_key, signature=signature)
            s.flush()
            if decision == "reject":
                tx.error = f"rejected by {actor.name}"
                self._move(s, actor, tx, states.REJECTED, by=actor.user_id)
            else:
                approvers = set(
                    s.scalars(
                        select(m.Approval.approver_id).where(
                            m.Approval.transaction_id == tx.id, m.Approval.decision == "approve"
                        )
                    )
                )
                requirement = self._requirement(tx)
                current = self._policy(s, tx.org_id)[0].version if tx.kind == "policy_change" else None
                superseded = tx.kind == "policy_change" and current != tx.policy_version
                if requirement.satisfied(approvers, tx.initiator_id) and superseded:
                    # Approved against an older policy than the one now in force: never let it win silently.
                    tx.error = (
                        f"superseded: proposed against version {tx.policy_version}, version {current} is in force"
                    )
                    self._move(s, None, tx, states.REJECTED, reason="superseded", version=current)
                elif requirement.satisfied(approvers, tx.initiator_id):
                    self._move(s, None, tx, states.APPROVED, approvers=sorted(approvers))
                    if tx.kind == "policy_change":
                        self._activate_policy(s, tx)
            view = self._view(s, tx)
        if tx.kind == "withdrawal" and view["state"] == states.APPROVED:
            self.on_approved(tx.id)
        return view

    @staticmethod
    def _requirement(tx: m.Transaction) -> pol.ApprovalRequirement:
        assert tx.requirement is not None
        return pol.ApprovalRequirement.from_json(tx.requirement)

    def cancel(self, actor: Actor, tx_id: str) -> dict[str, Any]:
        with self._tx() as s:
            tx = self._get(s, m.Transaction, tx_id, actor.org_id, "transaction")
            s.refresh(tx, with_for_update=True)
            if tx.initiator_id != actor.user_id and "admin" not in actor.roles:
                raise Forbidden("only the initiator or an admin can cancel a transaction")
            states.check(tx.kind, tx.state, states.CANCELLED)
            self._move(s, actor, tx, states.CANCELLED)
            return self._view(s, tx)

    # -- policy -----------------------------------------------------------------------------------------

    def get_policy(self, actor: Actor) -> dict[str, Any]:
        _require(actor, *ANYONE)
        with self._read() as s:
            return views.policy(self._policy(s, actor.org_id)[0])

    def list_policies(self, actor: Actor, page: Page) -> dict[str, Any]:
        _require(actor, *ANYONE)
        with self._read() as s:
            rows, cursor = views.paginate(s, select(m.Policy).where(m.Policy.org_id == actor.org_id), m.Policy, page)
            return {"items": [views.policy(p) for p in rows], "next_cursor": cursor}

    def propose_policy(
        self, actor: Actor, document: dict[str, Any], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """A policy change: a transaction that takes effect once enough other admins approve it."""
        _require(actor, "admin")
        try:
            policy = pol.Policy.from_document(document)
        except pol.PolicyError as exc:
            raise Invalid(f"policy: {exc}") from None
        request_hash = hashlib.sha256(json.dumps(["policy", policy.digest()]).encode()).hexdigest()
        if idempotency_key is not None:
            found = self._idempotent(actor, idempotency_key, request_hash)
            if found is not None:
                return found
        with self._tx() as s:
            users = s.scalars(select(m.User).where(m.User.org_id == actor.org_id, m.User.disabled.is_(False)))
            admins = frozenset(u.id for u in users if "admin" in u.roles and u.approval_key is not None)
            quorum_size = self.settings.policy_quorum
            if len(admins - {actor.user_id}) < quorum_size:
                raise Conflict(
                    f"a policy change needs {quorum_size} admin(s) other than the proposer to approve it; "
                    f"the organisation has {len(admins - {actor.user_id})}"
                )
            requirement = pol.ApprovalRequirement(
                combine="all", groups=(pol.ApprovalGroup(name="admins", members=admins, threshold=quorum_size),)
            )
            now = self.clock()
            tx = m.Transaction(
                org_id=actor.org_id,
                kind="policy_change",
                state=states.SUBMITTED,
                initiator_id=actor.user_id,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                policy_document=policy.to_document(),
                requirement=requirement.to_json(),
                policy_version=self._policy(s, actor.org_id)[0].version,
                created_at=now,
                updated_at=now,
            )
            s.add(tx)
            s.flush()
            self._event(
                s,
                actor,
                "transaction.submitted",
                tx.id,
                kind="policy_change",
                digest=policy.digest(),
                base_version=tx.policy_version,
            )
            self._move(s, actor, tx, states.PENDING_APPROVAL, requirement=tx.requirement)
            return self._view(s, tx)

    def _activate_policy(self, s: Session, tx: m.Transaction) -> None:
        assert tx.policy_document is not None
        policy = pol.Policy.from_document(tx.policy_document)
        current = s.scalar(select(func.max(m.Policy.version)).where(m.Policy.org_id == tx.org_id)) or 0
        s.add(
            m.Policy(
                org_id=tx.org_id,
                version=current + 1,
                document=policy.to_document(),
                digest=policy.digest(),
                transaction_id=tx.id,
            )
        )
        self._event(
            s,
            None,
            "policy.activated",
            tx.org_id,
            org_id=tx.org_id,
            version=current + 1,
            digest=policy.digest(),
            transaction=tx.id,
        )
        self._move(s, None, tx, states.CONFIRMED, version=current + 1)

    # -- deposits and audit -----------------------------------------------------------------------------

    def list_deposits(self, actor: Actor, page: Page) -> dict[str, Any]:
        _require(actor, *ANYONE)
        with self._read() as s:
            rows, cursor = views.paginate(s, select(m.Deposit).where(m.Deposit.org_id == actor.org_id), m.Deposit, page)
            symbols = {
                i: sym for i, sym in s.execute(select(m.Asset.id, m.Asset.symbol).where(m.Asset.org_id == actor.org_id))
            }
            return {"items": [views.deposit(d, symbols.get(d.asset_id)) for d in rows], "next_cursor": cursor}

    def audit_events(self, actor: Actor, page: Page) -> dict[str, Any]:
        _require(actor, "auditor", "admin")
        after = None
        if page.cursor is not None:
            if not page.cursor.isdigit() or len(page.cursor) > 18:
                raise Invalid("cursor is not one this service issued")
            after = int(page.cursor)
        with self._read() as s:
            events = self.audit.events(s, org_id=actor.org_id, after=after, limit=page.limit + 1)
        more = len(events) > page.limit
        events = events[: page.limit]
        return {"items": events, "next_cursor": str(events[-1]["index"]) if more else None}

    def audit_head(self, actor: Actor) -> dict[str, Any]:
        _require(actor, "auditor", "admin")
        with self._read() as s:
            return self.audit.head(s)

    def audit_proof(self, actor: Actor, index: int, tree_size: int | None = None) -> dict[str, Any]:
        _require(actor, "auditor", "admin")
        with self._read() as s:
            proof = self.audit.inclusion(s, index, tree_size)
        if proof["event"].get("org_id") != actor.org_id:
            raise NotFound(f"no audit event {index} in this organisation")
        return proof

    def audit_consistency(self, actor: Actor, old: int, new: int) -> dict[str, Any]:
        _require(actor, "auditor", "admin")
        with self._read() as s:
            return self.audit.consistency(s, old, new)


__all__ = ["POLICY_APPROVAL_DOMAIN", "Actor", "Custody", "CustodyError", "Page", "Settings", "policy_statement"]
