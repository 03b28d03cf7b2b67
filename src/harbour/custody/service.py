"""The custody service: one object the API, the CLI and the pipeline hold, over the domain modules.

:class:`Custody` is a thin facade. It wires the domain services together and
keeps the one set of public methods (:class:`harbour.api.interface.CustodyService`)
that callers use; each method is answered by the module that owns its domain
object:

- :mod:`~harbour.custody.genesis`: a new organisation and its genesis entry;
- :mod:`~harbour.custody.users`: users, credentials;
- :mod:`~harbour.custody.vaults` and :mod:`~harbour.custody.addressbook`: vaults,
  addresses, assets, the address book;
- :mod:`~harbour.custody.withdrawals`: submission, idempotency, the policy's decision, funds;
- :mod:`~harbour.custody.approvals`: approval requests, signed decisions, expiry, cancellation;
- :mod:`~harbour.custody.amend`: changing (``PATCH``, ``DELETE``) users, vaults, assets and entries;
- :mod:`~harbour.custody.governance`: proposing governance entries and landing them,
  the policy; :mod:`~harbour.custody.ledger` and :mod:`~harbour.custody.logview`: the log itself;
  :mod:`~harbour.custody.nodes`: the signer nodes the log names;
- :mod:`~harbour.custody.transactions`: reading transactions back;
- :mod:`~harbour.custody.deposits` and :mod:`~harbour.custody.auditor`: deposits and the audit log;
- :mod:`~harbour.custody.outbox`, :mod:`~harbour.custody.webhooks` and :mod:`~harbour.custody.dispatch`:
  events, webhook endpoints and their deliveries; :mod:`~harbour.custody.search` and
  :mod:`~harbour.custody.exports`: finding transactions, statements and histories.

Every method takes the authenticated :class:`Actor`, checks the role, validates
its input, and does its writes in one database transaction together with the
audit events that record them (:mod:`harbour.custody.uow`), so a state change
and its audit entry commit or vanish together. Whatever decides who may do what
(users, roles, keys, the policy, the address book, assets, vault keys) changes
only by governance entries its admin quorum signed, and every decision reads
the state their log puts in force. Signing, broadcasting and confirmation happen
in :mod:`harbour.custody.pipeline`; this service only moves a withdrawal as far
as ``approved`` and hands it over.

Custody never holds key material: a vault is a key id on the signer nodes and
its public key; a withdrawal reaches the nodes only as an approval certificate
that carries the approvers' own signatures, which each node re-checks.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from harbour.chains.evm import EvmClient
from harbour.custody import readiness
from harbour.custody.actors import ANYONE, ROLES, Actor
from harbour.custody.addressbook import AddressBook
from harbour.custody.amend import UNSET, Amend, Unset
from harbour.custody.approvals import Approvals
from harbour.custody.audit import AuditLog
from harbour.custody.auditor import Auditor
from harbour.custody.credentials import Credentials
from harbour.custody.deposits import Deposits
from harbour.custody.dispatch import Dispatcher
from harbour.custody.errors import CustodyError
from harbour.custody.exports import Exports
from harbour.custody.faucet import Faucet
from harbour.custody.funds import Funds
from harbour.custody.genesis import Charter, Founder, Founding, FoundingAsset
from harbour.custody.governance import Governance
from harbour.custody.ledger import Ledger
from harbour.custody.logview import LogView
from harbour.custody.nodes import Nodes
from harbour.custody.outbox import Outbox
from harbour.custody.replacement import CANCEL, SPEED_UP, Replacements
from harbour.custody.requestnonces import RequestNonces
from harbour.custody.resharing import Resharing
from harbour.custody.search import Filters, TransactionSearch
from harbour.custody.settings import Settings
from harbour.custody.signer import Signer
from harbour.custody.sweep import Sweeps
from harbour.custody.transactions import Transactions
from harbour.custody.uow import UnitOfWork, now
from harbour.custody.users import TOKEN_PREFIX, Users
from harbour.custody.vaults import Vaults
from harbour.custody.views import Page
from harbour.custody.webhooks import Webhooks
from harbour.custody.webhooksig import WebhookKeys
from harbour.custody.withdrawals import Withdrawals
from harbour.governance.state import GovernanceLog

Json = dict[str, Any]


class Custody:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        chain: EvmClient,
        signer: Signer,
        audit: AuditLog,
        settings: Settings | None = None,
        *,
        clock: Callable[[], dt.datetime] = now,
        readers: sessionmaker[Session] | None = None,
        webhook_key: bytes | None = None,
    ) -> None:
        """``webhook_key``: the 32-byte master of the organisations' webhook keys (random if None: tests)."""
        self.chain = chain
        self.signer = signer
        self.audit = audit
        self.settings = settings or Settings()
        self.uow = UnitOfWork(sessions, audit, clock=clock, readers=readers)
        self.on_approved: Callable[[str], None] = lambda tx_id: None
        """Set by the pipeline: called after commit with the id of a withdrawal that became approved."""

        self.on_landed: Callable[[str], None] = lambda org_id: None
        """Set by the pipeline: called after commit with the id of an organisation whose log an entry extended."""

        def approved(tx_id: str) -> None:  # looked up on each call: the pipeline sets it after this is built
            self.on_approved(tx_id)

        def landed(org_id: str) -> None:
            self.on_landed(org_id)

        self.ready_answer = readiness.Cached(lambda: readiness.readiness(self.uow.readers, self.chain, self.signer))
        self.ledger = Ledger(self.uow)
        self.transactions = Transactions(self.uow)
        self.governance = Governance(self.uow, self.ledger, self.transactions)
        self.founding = Founding(self.uow, self.ledger, chain.chain_id, signer, chain)
        self.users = Users(self.uow, self.ledger, self.governance, chain.chain_id)
        self.credentials = Credentials(self.uow)
        self.request_nonces = RequestNonces(self.uow)
        self.vaults = Vaults(self.uow, chain, signer, self.ledger, self.governance)
        self.address_book = AddressBook(self.uow, self.governance)
        self.amend = Amend(self.governance)
        self.log_view = LogView(self.uow, self.ledger)
        self.nodes = Nodes(self.uow, self.ledger, self.governance, signer)
        self.resharing = Resharing(self.uow, signer, self.ledger, self.governance)
        self.withdrawals = Withdrawals(self.uow, chain, self.settings, self.ledger, self.transactions, approved)
        self.replacements = Replacements(self.uow, self.withdrawals)
        self.approvals = Approvals(self.uow, self.ledger, self.governance, self.settings, approved, landed)
        self.deposits = Deposits(self.uow, chain, self.settings)
        self.sweeps = Sweeps(self.uow, chain, self.settings, self.ledger, self.withdrawals)
        self.faucet = Faucet(chain)
        self.auditor = Auditor(self.uow, audit)
        self.outbox = Outbox(self.uow)
        self.outbox.attach()
        keys = WebhookKeys(webhook_key if webhook_key is not None else os.urandom(32))
        self.webhooks = Webhooks(self.uow, keys, self.settings)
        self.dispatcher = Dispatcher(self.uow, keys, self.settings)
        self.outbox.listeners.append(self.dispatcher.wake)
        self.search = TransactionSearch(self.uow)
        self.exports = Exports(self.uow)

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.uow.sessions

    @property
    def readers(self) -> sessionmaker[Session]:
        return self.uow.readers

    @property
    def clock(self) -> Callable[[], dt.datetime]:
        return self.uow.clock

    # -- organisations, users and credentials ----------------------------------------------------------

    def bootstrap(
        self,
        org: str,
        users: Sequence[Founder],
        *,
        quorum: int = 1,
        assets: Sequence[FoundingAsset] = (),
        policy: Json | None = None,
    ) -> Json:
        """A new organisation from its genesis entry (not reachable through the API)."""
        return self.founding.bootstrap(Charter(org, users, quorum, assets, policy))

    def dev_fund(self, actor: Actor, *, address: str, amount: int) -> Json:
        return self.faucet.fund(actor, address=address, amount=amount)

    def readiness(self) -> Json:
        return self.ready_answer.answer()

    def authenticate(self, token: str) -> Actor:
        return self.users.authenticate(token)

    def record_auth_burst(self, credential_id: str, address: str) -> None:
        self.credentials.record_burst(credential_id, address)

    def use_request_nonce(self, credential_id: str, nonce: str, lifetime: float) -> bool:
        return self.request_nonces.use(credential_id, nonce, lifetime)

    def organisation(self, actor: Actor) -> Json:
        return self.users.organisation(actor)

    def create_user(self, actor: Actor, *, name: str, roles: list[str], approval_key: str | None = None) -> Json:
        return self.users.create_user(actor, name=name, roles=roles, approval_key=approval_key)

    def issue_credential(self, actor: Actor, user_id: str, **terms: Any) -> Json:
        return self.users.issue_credential(actor, user_id, **terms)

    def list_credentials(self, actor: Actor, page: Page, user_id: str | None = None) -> Json:
        return self.credentials.list(actor, page, user_id)

    def disable_user(self, actor: Actor, user_id: str) -> Json:
        return self.users.disable_user(actor, user_id)

    def enable_user(self, actor: Actor, user_id: str) -> Json:
        return self.users.enable_user(actor, user_id)

    def set_roles(self, actor: Actor, user_id: str, *, roles: list[str]) -> Json:
        return self.users.set_roles(actor, user_id, roles)

    def set_approval_key(self, actor: Actor, user_id: str, *, approval_key: str | None) -> Json:
        return self.users.set_approval_key(actor, user_id, approval_key)

    def revoke_credential(self, actor: Actor, credential_id: str) -> Json:
        return self.users.revoke_credential(actor, credential_id)

    def list_users(self, actor: Actor, page: Page) -> Json:
        return self.users.list_users(actor, page)

    # -- vaults, addresses, assets, address book --------------------------------------------------------

    def create_vault(self, actor: Actor, *, name: str, threshold: int = 2, nodes: list[str] | None = None) -> Json:
        return self.vaults.create_vault(actor, name=name, threshold=threshold, nodes=nodes)

    def reshare_vault(self, actor: Actor, vault_id: str, *, nodes: list[str], threshold: int) -> Json:
        return self.resharing.reshare(actor, vault_id, nodes=nodes, threshold=threshold)

    def list_vaults(self, actor: Actor, page: Page) -> Json:
        return self.vaults.list_vaults(actor, page)

    def get_vault(self, actor: Actor, vault_id: str) -> Json:
        return self.vaults.get_vault(actor, vault_id)

    def derive_address(self, actor: Actor, vault_id: str, *, label: str | None = None) -> Json:
        return self.vaults.derive_address(actor, vault_id, label=label)

    def list_addresses(self, actor: Actor, vault_id: str, page: Page) -> Json:
        return self.vaults.list_addresses(actor, vault_id, page)

    def add_asset(
        self, actor: Actor, *, symbol: str, kind: str, contract: str | None = None, decimals: int = 18
    ) -> Json:
        return self.vaults.add_asset(actor, symbol=symbol, kind=kind, contract=contract, decimals=decimals)

    def list_assets(self, actor: Actor, page: Page) -> Json:
        return self.vaults.list_assets(actor, page)

    def add_address_book_entry(self, actor: Actor, *, name: str, address: str, whitelisted: bool = False) -> Json:
        return self.address_book.add(actor, name=name, address=address, whitelisted=whitelisted)

    def set_whitelisted(self, actor: Actor, entry_id: str, *, whitelisted: bool) -> Json:
        return self.address_book.whitelist(actor, entry_id, whitelisted)

    def remove_address_book_entry(self, actor: Actor, entry_id: str) -> Json:
        return self.address_book.remove(actor, entry_id)

    def list_address_book(self, actor: Actor, page: Page) -> Json:
        return self.address_book.list(actor, page)

    # -- changing what the log made (PATCH and DELETE) --------------------------------------------------

    def update_user(
        self,
        actor: Actor,
        user_id: str,
        *,
        roles: list[str] | Unset = UNSET,
        approval_key: str | Unset | None = UNSET,
        disabled: bool | Unset = UNSET,
    ) -> Json:
        return self.amend.user(actor, user_id, roles=roles, approval_key=approval_key, disabled=disabled)

    def update_vault(
        self, actor: Actor, vault_id: str, *, name: str | Unset = UNSET, archived: bool | Unset = UNSET
    ) -> Json:
        return self.amend.vault(actor, vault_id, name=name, archived=archived)

    def archive_vault(self, actor: Actor, vault_id: str) -> Json:
        return self.amend.vault(actor, vault_id, archived=True)

    def update_asset(self, actor: Actor, asset_id: str, *, disabled: bool) -> Json:
        return self.amend.asset(actor, asset_id, disabled=disabled)

    def update_address_book_entry(
        self, actor: Actor, entry_id: str, *, name: str | Unset = UNSET, whitelisted: bool | Unset = UNSET
    ) -> Json:
        return self.amend.address_book_entry(actor, entry_id, name=name, whitelisted=whitelisted)

    # -- withdrawals and transactions -------------------------------------------------------------------

    def explain(self, actor: Actor, *, vault_id: str, asset: str, to: str, amount: int) -> Json:
        return self.withdrawals.explain(actor, vault_id=vault_id, asset=asset, to=to, amount=amount)

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
        request_id: str | None = None,
        signature: str | None = None,
        source_address: str | None = None,
        external_id: str | None = None,
        fee_level: str | None = None,
        max_fee_per_gas: int | str | None = None,
        max_priority_fee_per_gas: int | str | None = None,
    ) -> Json:
        return self.withdrawals.submit_withdrawal(
            actor,
            vault_id=vault_id,
            asset=asset,
            to=to,
            amount=amount,
            idempotency_key=idempotency_key,
            note=note,
            request_id=request_id,
            signature=signature,
            source_address=source_address,
            external_id=external_id,
            fee_level=fee_level,
            max_fee_per_gas=max_fee_per_gas,
            max_priority_fee_per_gas=max_priority_fee_per_gas,
        )

    def estimate(self, actor: Actor, *, vault_id: str, asset: str, to: str, amount: int) -> Json:
        return self.withdrawals.estimate(actor, vault_id=vault_id, asset=asset, to=to, amount=amount)

    def speed_up(
        self,
        actor: Actor,
        tx_id: str,
        *,
        fee_level: str | None = None,
        max_fee_per_gas: int | str | None = None,
        max_priority_fee_per_gas: int | str | None = None,
    ) -> Json:
        """A replacement of the broadcast ``tx_id`` paying the same with higher fees (custody/replacement.py)."""
        return self.replacements.replace(
            actor,
            tx_id,
            SPEED_UP,
            fee_level=fee_level,
            max_fee_per_gas=max_fee_per_gas,
            max_priority_fee_per_gas=max_priority_fee_per_gas,
        )

    def get_transaction(self, actor: Actor, tx_id: str) -> Json:
        return self.transactions.get_transaction(actor, tx_id)

    def list_transactions(self, actor: Actor, page: Page, state: str | None = None) -> Json:
        return self.transactions.list_transactions(actor, page, state)

    def search_transactions(self, actor: Actor, page: Page, filters: Filters) -> Json:
        return self.search.search(actor, page, filters)

    def get_transaction_by_external_id(self, actor: Actor, external_id: str) -> Json:
        return self.search.by_external_id(actor, external_id)

    # -- notifications and exports ----------------------------------------------------------------------

    def create_webhook(self, actor: Actor, *, url: str, events: list[str], description: str | None = None) -> Json:
        return self.webhooks.create(actor, url=url, events=events, description=description)

    def list_webhooks(self, actor: Actor, page: Page) -> Json:
        return self.webhooks.list(actor, page)

    def get_webhook(self, actor: Actor, webhook_id: str) -> Json:
        return self.webhooks.get(actor, webhook_id)

    def set_webhook_enabled(self, actor: Actor, webhook_id: str, *, enabled: bool) -> Json:
        return self.webhooks.set_enabled(actor, webhook_id, enabled)

    def webhook_deliveries(self, actor: Actor, webhook_id: str, page: Page, state: str | None = None) -> Json:
        return self.webhooks.deliveries(actor, webhook_id, page, state)

    def webhook_signing_key(self, actor: Actor) -> Json:
        return self.webhooks.signing_key(actor)

    def events_after(self, actor: Actor, after: int | None, limit: int = 100) -> Json:
        return self.outbox.events_after(actor, after, limit)

    def events_head(self, actor: Actor) -> int | None:
        return self.outbox.head(actor)

    def vault_statement(self, actor: Actor, vault_id: str, *, start: str, end: str) -> Json:
        return self.exports.statement(actor, vault_id, start, end)

    def vault_history(self, actor: Actor, vault_id: str, *, start: str, end: str) -> Json:
        return self.exports.history(actor, vault_id, start, end)

    # -- approvals --------------------------------------------------------------------------------------

    def approval_request(self, actor: Actor, tx_id: str) -> Json:
        return self.approvals.approval_request(actor, tx_id)

    def approve(self, actor: Actor, tx_id: str, *, signature: str) -> Json:
        return self.approvals.approve(actor, tx_id, signature=signature)

    def reject(self, actor: Actor, tx_id: str, *, signature: str) -> Json:
        return self.approvals.reject(actor, tx_id, signature=signature)

    def cancel(
        self,
        actor: Actor,
        tx_id: str,
        *,
        fee_level: str | None = None,
        max_fee_per_gas: int | str | None = None,
        max_priority_fee_per_gas: int | str | None = None,
    ) -> Json:
        """Cancel before signing; a broadcast withdrawal, by a zero-value replacement (custody/replacement.py)."""
        if self.replacements.is_broadcast(actor, tx_id):
            return self.replacements.replace(
                actor,
                tx_id,
                CANCEL,
                fee_level=fee_level,
                max_fee_per_gas=max_fee_per_gas,
                max_priority_fee_per_gas=max_priority_fee_per_gas,
            )
        return self.approvals.cancel(actor, tx_id)

    def expire_approvals(self) -> int:
        """Mark the approvals that expired while their transactions waited (the pipeline's sweep calls it)."""
        return self.approvals.expire_due()

    # -- policy -----------------------------------------------------------------------------------------

    def get_policy(self, actor: Actor) -> Json:
        return self.governance.get_policy(actor)

    def list_policies(self, actor: Actor, page: Page) -> Json:
        return self.governance.list_policies(actor, page)

    def propose_policy(self, actor: Actor, document: Json, idempotency_key: str | None = None) -> Json:
        return self.governance.propose_policy(actor, document, idempotency_key)

    # -- the governance log -----------------------------------------------------------------------------

    def governance_entries(self, actor: Actor, page: Page) -> Json:
        return self.log_view.entries(actor, page)

    def governance_head(self, actor: Actor) -> Json:
        return self.log_view.head(actor)

    def list_nodes(self, actor: Actor) -> Json:
        return self.nodes.list(actor)

    def add_node(self, actor: Actor, name: str) -> Json:
        return self.nodes.add(actor, name)

    def remove_node(self, actor: Actor, name: str) -> Json:
        return self.nodes.remove(actor, name)

    def governance_log(self, org_id: str) -> GovernanceLog:
        """The organisation's verified governance log, a copy (what a signer pushes to the nodes and cites)."""
        return self.ledger.log(org_id)

    # -- deposits and audit -----------------------------------------------------------------------------

    def list_deposits(self, actor: Actor, page: Page) -> Json:
        return self.deposits.list_deposits(actor, page)

    def audit_events(self, actor: Actor, page: Page) -> Json:
        return self.auditor.audit_events(actor, page)

    def audit_head(self, actor: Actor) -> Json:
        return self.auditor.audit_head(actor)

    def audit_proof(self, actor: Actor, index: int, tree_size: int | None = None) -> Json:
        return self.auditor.audit_proof(actor, index, tree_size)

    def audit_consistency(self, actor: Actor, old: int, new: int) -> Json:
        return self.auditor.audit_consistency(actor, old, new)


__all__ = [
    "ANYONE",
    "ROLES",
    "TOKEN_PREFIX",
    "Actor",
    "Custody",
    "CustodyError",
    "Founder",
    "FoundingAsset",
    "Funds",
    "Page",
    "Settings",
]
