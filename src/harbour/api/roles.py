"""Which roles may call which route: the one table, checked before the service is called.

The custody service enforces roles itself; the API checks them again from this
table before it calls the service (defence in depth: a service method that
forgot its check, or a route wired to the wrong method, still cannot be reached
by the wrong role). A route missing from the table is refused for everyone, and
a test checks that every route is listed. docs/api.md reproduces the table and a
test keeps the two equal.
"""

from __future__ import annotations

from typing import Final

ADMIN: Final = "admin"
INITIATOR: Final = "initiator"
APPROVER: Final = "approver"
AUDITOR: Final = "auditor"
VIEWER: Final = "viewer"
EVERYONE: Final = frozenset({ADMIN, INITIATOR, APPROVER, AUDITOR, VIEWER})

ROUTE_ROLES: Final[dict[tuple[str, str], frozenset[str]]] = {
    ("GET", "/v1/me"): EVERYONE,
    ("GET", "/v1/org"): EVERYONE,
    ("GET", "/v1/me/credentials"): EVERYONE,
    ("POST", "/v1/users"): frozenset({ADMIN}),
    ("GET", "/v1/users"): EVERYONE,
    ("POST", "/v1/users/{user_id}/credentials"): frozenset({ADMIN}),
    ("GET", "/v1/users/{user_id}/credentials"): frozenset({ADMIN, AUDITOR}),
    ("GET", "/v1/credentials"): frozenset({ADMIN, AUDITOR}),
    ("POST", "/v1/users/{user_id}/disable"): frozenset({ADMIN}),
    ("POST", "/v1/users/{user_id}/enable"): frozenset({ADMIN}),
    ("POST", "/v1/users/{user_id}/roles"): frozenset({ADMIN}),
    ("POST", "/v1/users/{user_id}/approval-key"): frozenset({ADMIN}),
    ("POST", "/v1/credentials/{credential_id}/revoke"): EVERYONE,
    ("POST", "/v1/vaults"): frozenset({ADMIN}),
    ("GET", "/v1/vaults"): EVERYONE,
    ("GET", "/v1/vaults/{vault_id}"): EVERYONE,
    ("POST", "/v1/vaults/{vault_id}/addresses"): frozenset({ADMIN}),
    ("POST", "/v1/vaults/{vault_id}/reshare"): frozenset({ADMIN}),
    ("GET", "/v1/vaults/{vault_id}/addresses"): EVERYONE,
    ("POST", "/v1/assets"): frozenset({ADMIN}),
    ("GET", "/v1/assets"): EVERYONE,
    ("POST", "/v1/address-book"): frozenset({ADMIN}),
    ("GET", "/v1/address-book"): EVERYONE,
    ("POST", "/v1/address-book/{entry_id}/whitelist"): frozenset({ADMIN}),
    ("POST", "/v1/address-book/{entry_id}/remove"): frozenset({ADMIN}),
    # changing and retiring what the log made: each a governance proposal (harbour.custody.amend)
    ("PATCH", "/v1/users/{user_id}"): frozenset({ADMIN}),
    ("DELETE", "/v1/users/{user_id}"): frozenset({ADMIN}),
    ("PATCH", "/v1/vaults/{vault_id}"): frozenset({ADMIN}),
    ("DELETE", "/v1/vaults/{vault_id}"): frozenset({ADMIN}),
    ("PATCH", "/v1/assets/{asset_id}"): frozenset({ADMIN}),
    ("DELETE", "/v1/assets/{asset_id}"): frozenset({ADMIN}),
    ("PATCH", "/v1/address-book/{entry_id}"): frozenset({ADMIN}),
    ("DELETE", "/v1/address-book/{entry_id}"): frozenset({ADMIN}),
    ("POST", "/v1/transactions"): frozenset({INITIATOR}),
    ("GET", "/v1/transactions"): EVERYONE,
    ("POST", "/v1/transactions/explain"): frozenset({ADMIN, INITIATOR, APPROVER, AUDITOR}),
    ("POST", "/v1/transactions/estimate"): frozenset({ADMIN, INITIATOR, APPROVER, AUDITOR}),
    ("POST", "/v1/transactions/{tx_id}/speed-up"): frozenset({ADMIN, INITIATOR}),
    ("GET", "/v1/transactions/{tx_id}"): EVERYONE,
    ("GET", "/v1/transactions/{tx_id}/approval-request"): frozenset({ADMIN, APPROVER}),
    ("POST", "/v1/transactions/{tx_id}/approve"): frozenset({ADMIN, APPROVER}),
    ("POST", "/v1/transactions/{tx_id}/reject"): frozenset({ADMIN, APPROVER}),
    ("POST", "/v1/transactions/{tx_id}/cancel"): frozenset({ADMIN, INITIATOR}),
    ("GET", "/v1/policy"): EVERYONE,
    ("GET", "/v1/policy/versions"): EVERYONE,
    ("POST", "/v1/policy/proposals"): frozenset({ADMIN}),
    ("GET", "/v1/governance/entries"): EVERYONE,
    ("GET", "/v1/governance/head"): EVERYONE,
    ("GET", "/v1/governance/nodes"): EVERYONE,
    ("POST", "/v1/governance/nodes"): frozenset({ADMIN}),
    ("POST", "/v1/governance/nodes/{name}/remove"): frozenset({ADMIN}),
    ("GET", "/v1/deposits"): EVERYONE,
    ("POST", "/v1/dev/fund"): frozenset({ADMIN}),
    ("GET", "/v1/audit/events"): frozenset({ADMIN, AUDITOR}),
    ("GET", "/v1/audit/head"): frozenset({ADMIN, AUDITOR}),
    ("GET", "/v1/audit/proof/{index}"): frozenset({ADMIN, AUDITOR}),
    ("GET", "/v1/audit/consistency"): frozenset({ADMIN, AUDITOR}),
    ("GET", "/v1/transactions/external/{external_id}"): EVERYONE,
    ("POST", "/v1/webhooks"): frozenset({ADMIN}),
    ("GET", "/v1/webhooks"): frozenset({ADMIN, AUDITOR}),
    ("GET", "/v1/webhooks/signing-key"): EVERYONE,
    ("GET", "/v1/webhooks/{webhook_id}"): frozenset({ADMIN, AUDITOR}),
    ("POST", "/v1/webhooks/{webhook_id}/enable"): frozenset({ADMIN}),
    ("POST", "/v1/webhooks/{webhook_id}/disable"): frozenset({ADMIN}),
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): frozenset({ADMIN, AUDITOR}),
    ("GET", "/v1/events"): EVERYONE,
    ("GET", "/v1/vaults/{vault_id}/statement"): EVERYONE,
    ("GET", "/v1/vaults/{vault_id}/history"): EVERYONE,
}
