"""``harbour org/user/vault/address/asset/address-book/deposit``: the custody API's directory.

Each command is one request (``--all`` on a list follows the pages). ``--json``
prints the API's JSON as one line; otherwise a table or ``key: value`` lines.
Amounts and balances are integers in base units (wei for ETH). A command that
changes users, assets, vaults or the address book proposes a governance change
and prints it; it takes effect once its proposer and the admin quorum sign it
(``harbour approve``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

import typer

from harbour.cli import output
from harbour.cli.apiclient import (
    DEFAULT_API,
    MAX_LIMIT,
    AllOption,
    ApiOption,
    Client,
    CursorOption,
    LimitOption,
    TokenOption,
    api_errors,
    check_limit,
    connect,
    emit,
    emit_page,
    emit_proposal,
    list_command,
    note,
)
from harbour.cli.names import ASSET, ENTRY, USER, VAULT, Directory, Kind, named, resolve
from harbour.cli.params import InputError, JsonOption
from harbour.cli.tree import choice

ROLES: Final = ("admin", "initiator", "approver", "auditor", "viewer")
VAULT_TIMEOUT: Final = 600.0
"""Creating a vault runs distributed key generation on the signer nodes; it takes a while."""
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX_KEY = re.compile(r"[0-9a-f]{64}")

org_app = typer.Typer(help="Your organisation.", no_args_is_help=True)
user_app = typer.Typer(help="Users, their roles and keys, and their API credentials.", no_args_is_help=True)
vault_app = typer.Typer(help="Vaults: MPC keys on the signer nodes.", no_args_is_help=True)
address_app = typer.Typer(help="A vault's addresses (BIP-32 children of its key).", no_args_is_help=True)
asset_app = typer.Typer(help="Assets: ETH and ERC-20 tokens.", no_args_is_help=True)
book_app = typer.Typer(help="The address book of known destinations.", no_args_is_help=True)
deposit_app = typer.Typer(help="Deposits seen on chain.", no_args_is_help=True)


@org_app.callback()
def _org() -> None:
    """Your organisation."""


@deposit_app.callback()
def _deposit() -> None:
    """Deposits seen on chain."""


VaultOption = Annotated[str, typer.Option("--vault", help="The vault's name or id.")]


def check_id(value: str, what: str) -> str:
    value = value.strip().lower()
    if not _UUID.fullmatch(value):
        raise InputError(f"{what} is an id like 1b4e28ba-2fa1-11d2-883f-0016d3cca427, got {value!r}")
    return value


# -- org -------------------------------------------------------------------------------------------------


@org_app.command("show")
def org_show(api: ApiOption = DEFAULT_API, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """The organisation and who you are in it."""
    with api_errors(), connect(api, token) as client:
        organisation = client.get("/v1/org")
        me = client.get("/v1/me")
    if as_json:
        emit({"organisation": organisation, "user": me}, True)
    else:
        emit(
            {
                "organisation": organisation.get("name"),
                "org_id": organisation.get("id"),
                "user": me.get("name"),
                "user_id": me.get("user_id"),
                "roles": ", ".join(me.get("roles", [])),
            },
            False,
        )


# -- users -----------------------------------------------------------------------------------------------


@user_app.command("create")
def user_create(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, spaces, ._-).")],
    role: Annotated[list[str], typer.Option("--role", "-r", parser=choice(ROLES, "role"), help="Role, repeatable.")],
    approval_key: Annotated[
        str | None,
        typer.Option("--approval-key", help="Hex Ed25519 public key (from approver-key new); approvers and admins."),
    ] = None,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Propose a new user (admin); the user exists once the admin quorum signs it."""
    with api_errors():
        body = {"name": name, "roles": _roles(role), "approval_key": _key(approval_key)}
        with connect(api, token) as client:
            proposal = client.post("/v1/users", body)
    emit_proposal(proposal, as_json)


def _roles(role: list[str]) -> list[str]:
    unknown = [r for r in role if r not in ROLES]
    if unknown:
        raise InputError(f"--role: unknown role {unknown[0]!r}; choose from {', '.join(ROLES)}")
    return sorted(set(role))


def _key(approval_key: str | None) -> str | None:
    if approval_key is None:
        return None
    if not _HEX_KEY.fullmatch(approval_key.strip().lower()):
        raise InputError("--approval-key is a 32-byte Ed25519 public key in hex (64 digits)")
    return approval_key.strip().lower()


list_command(user_app, "list", "/v1/users", ["id", "name", "roles", "disabled"], "List the organisation's users.")


def _post_on(
    path: str,
    value: str,
    kind: Kind | None,
    what: str,
    api: str,
    token: str | None,
    as_json: bool,
    body: Any = None,
    method: str = "POST",
) -> dict[str, Any]:
    """``method`` (POST, or PATCH, DELETE) ``body`` to ``path`` with the id ``value`` names filled in; the answer."""
    with api_errors(), connect(api, token) as client:
        checked = check_id(value, what) if kind is None else resolve(client, kind, value, what)
        return dict(client.request(method, path.format(checked), body=body))


UserIdArgument = Annotated[str, typer.Argument(metavar="USER", help="The user's name or id.")]


@user_app.command("credential")
def user_credential(
    user_id: UserIdArgument,
    expires_in: Annotated[
        int | None, typer.Option("--expires-in", help="Seconds until it expires (default: never).")
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope", parser=choice(("read", "initiate", "full"), "scope"), help="full is the default; repeatable."
        ),
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", help="A CIDR block requests may come from (default: anywhere); repeatable."),
    ] = None,
    signing_key: Annotated[
        str | None,
        typer.Option("--signing-key", help="Hex Ed25519 public key every request must then be signed with."),
    ] = None,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Issue an API credential for a user (admin); it is shown only this once.

    An admin's credential is a governance change: the token works once it lands.
    The options narrow it (docs/api.md, "Authentication and credentials"); the
    API refuses terms that do not parse.
    """
    terms: dict[str, Any] = {"expires_in": expires_in, "scopes": scope, "allow": allow, "signing_key": signing_key}
    body = {k: v for k, v in terms.items() if v is not None}
    issued = _post_on("/v1/users/{}/credentials", user_id, USER, "USER", api, token, as_json, body)
    pending = issued.get("transaction")
    if as_json or not isinstance(pending, dict):
        emit(issued, as_json)
        return
    emit({"user_id": issued.get("user_id"), "token": issued.get("token")}, False)
    note("an admin's credential works once this governance change lands:", False)
    emit_proposal(pending, False)


@user_app.command("disable")
def user_disable(
    user_id: UserIdArgument, api: ApiOption = DEFAULT_API, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """Propose disabling a user (admin): once it lands their credentials stop working and their unsigned
    withdrawals are cancelled."""
    emit_proposal(_post_on("/v1/users/{}/disable", user_id, USER, "USER", api, token, as_json), as_json)


@user_app.command("enable")
def user_enable(
    user_id: UserIdArgument, api: ApiOption = DEFAULT_API, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """Propose re-enabling a user (admin); they need a new credential afterwards."""
    emit_proposal(_post_on("/v1/users/{}/enable", user_id, USER, "USER", api, token, as_json), as_json)


@user_app.command("roles")
def user_roles(
    user_id: UserIdArgument,
    role: Annotated[list[str], typer.Option("--role", "-r", parser=choice(ROLES, "role"), help="Role, repeatable.")],
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Propose new roles for a user (admin): the list given replaces the user's roles."""
    with api_errors():
        body = {"roles": _roles(role)}
    emit_proposal(_post_on("/v1/users/{}/roles", user_id, USER, "USER", api, token, as_json, body), as_json)


@user_app.command("set-key")
def user_set_key(
    user_id: UserIdArgument,
    approval_key: Annotated[str, typer.Option("--approval-key", help="The new hex Ed25519 public key.")],
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Propose registering or rotating a user's approval key (admin)."""
    with api_errors():
        body = {"approval_key": _key(approval_key)}
    emit_proposal(_post_on("/v1/users/{}/approval-key", user_id, USER, "USER", api, token, as_json, body), as_json)


@user_app.command("credentials")
def user_credentials(
    user_id: Annotated[
        str | None, typer.Argument(metavar="[USER]", help="Whose, by name or id (admin, auditor); default: your own.")
    ] = None,
    everyone: Annotated[bool, typer.Option("--org", help="Every credential of the organisation.")] = False,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    walk: AllOption = False,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """List API credentials and their terms (never a secret)."""
    with api_errors():
        if everyone and user_id is not None:
            raise InputError("give a USER or --org, not both")
        with connect(api, token) as client:
            directory = Directory(client)
            path = (
                "/v1/credentials"
                if everyone
                else "/v1/me/credentials"
                if user_id is None
                else f"/v1/users/{directory.resolve(USER, user_id, 'USER')}/credentials"
            )
            page = client.pages(path, limit, cursor, walk)
            if not as_json:
                named(page, directory, USER, "user_id", "user")
    emit_page(page, ["id", "user", "state", "scopes", "allow", "expires_at"], as_json)


@user_app.command("revoke-credential")
def user_revoke_credential(
    credential_id: Annotated[str, typer.Argument(help="The credential id: the middle part of hbk_<id>_<secret>.")],
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke one API credential (its owner or an admin)."""
    emit(_post_on("/v1/credentials/{}/revoke", credential_id, None, "CREDENTIAL_ID", api, token, as_json), as_json)


# -- vaults and addresses ---------------------------------------------------------------------------------


@vault_app.command("create")
def vault_create(
    name: Annotated[str, typer.Argument(help="Vault name.")],
    threshold: Annotated[int, typer.Option("--threshold", "-t", help="Signer nodes needed to sign (at least 2).")],
    node: Annotated[
        list[str] | None, typer.Option("--node", help="Signer node name, repeatable, in party order (default: all).")
    ] = None,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a vault (admin): key generation on the signer nodes, then the governance change that binds the key."""
    with api_errors():
        if threshold < 2:
            raise InputError("--threshold must be at least 2 (a 1-of-n key is a single point of failure)")
        body = {"name": name, "threshold": threshold, "nodes": node or None}
        with connect(api, token, timeout=VAULT_TIMEOUT) as client, output.progress("key generation on the nodes"):
            proposal = client.post("/v1/vaults", body)
    emit_proposal(proposal, as_json)


list_command(vault_app, "list", "/v1/vaults", ["id", "name", "threshold", "nodes", "key_id"], "List vaults.")


@vault_app.command("show")
def vault_show(
    vault_id: Annotated[str, typer.Argument(metavar="VAULT", help="The vault's name or id.")],
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """A vault with its addresses and on-chain balances (base units)."""
    with api_errors(), connect(api, token) as client:
        vault = client.get(f"/v1/vaults/{resolve(client, VAULT, vault_id, 'VAULT')}")
    if as_json:
        emit(vault, True)
        return
    addresses = vault.pop("addresses", [])
    emit(vault, False)
    if addresses:
        typer.echo("")
        emit_page({"items": addresses, "next_cursor": None}, ["path", "address", "label", "balances"], as_json=False)


@address_app.command("new")
def address_new(
    vault: VaultOption,
    label: Annotated[str | None, typer.Option("--label", help="A name for the address.")] = None,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Derive the vault's next address (admin)."""
    with api_errors(), connect(api, token) as client:
        vault = resolve(client, VAULT, vault, "--vault")
        address = client.post(f"/v1/vaults/{vault}/addresses", {"label": label})
    emit(address, as_json)


@address_app.command("list")
def address_list(
    vault: VaultOption,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    walk: AllOption = False,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """List a vault's addresses."""
    with api_errors():
        check_limit(limit)
        with connect(api, token) as client:
            vault = resolve(client, VAULT, vault, "--vault")
            page = client.pages(f"/v1/vaults/{vault}/addresses", limit, cursor, walk)
    emit_page(page, ["path", "address", "label", "id"], as_json)


VaultIdArgument = Annotated[str, typer.Argument(metavar="VAULT", help="The vault's name or id.")]


@vault_app.command("reshare")
def vault_reshare(
    vault: Annotated[str, typer.Argument(help="The vault's name or id.")],
    nodes: Annotated[str, typer.Option("--nodes", help="The whole new committee: node names, comma-separated.")],
    threshold: Annotated[
        int, typer.Option("--threshold", "-t", help="Signers needed: above half the committee, never lower than now.")
    ],
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move a vault's key onto other signer nodes (admin): same key and addresses; then propose recording it."""
    with api_errors():
        members = [n.strip() for n in nodes.split(",") if n.strip()]
        if len(members) < 2:
            raise InputError("--nodes names the whole new committee, at least two nodes: node1,node2,node3")
        if threshold < 2:
            raise InputError("--threshold must be at least 2 (a 1-of-n key is a single point of failure)")
        body = {"nodes": members, "threshold": threshold}
        with connect(api, token, timeout=VAULT_TIMEOUT) as client:
            vault_id = _vault_id(client, vault)
            proposal = client.post(f"/v1/vaults/{vault_id}/reshare", body)
    emit_proposal(proposal, as_json)


def _vault_id(client: Client, vault: str) -> str:
    """The id of the vault named ``vault`` (names compare ignoring case and width), or ``vault`` if it is an id."""
    if _UUID.fullmatch(vault.strip().lower()):
        return vault.strip().lower()
    from harbour.util.text import name_key

    items = client.pages("/v1/vaults", MAX_LIMIT, None, True)["items"]
    found = [v["id"] for v in items if isinstance(v, dict) and name_key(str(v.get("name"))) == name_key(vault)]
    if not found:
        raise InputError(f"no vault named {vault!r} (harbour vault list shows them)")
    return str(found[0])


@vault_app.command("rename")
def vault_rename(
    vault_id: VaultIdArgument,
    name: Annotated[str, typer.Argument(help="The vault's new name.")],
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Propose a new name for a vault (admin)."""
    body = {"name": name}
    emit_proposal(_post_on("/v1/vaults/{}", vault_id, VAULT, "VAULT", api, token, as_json, body, "PATCH"), as_json)


@vault_app.command("archive")
def vault_archive(
    vault_id: VaultIdArgument, api: ApiOption = DEFAULT_API, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """Propose archiving a vault for good: no new withdrawal or address; deposits still count (admin)."""
    emit_proposal(_post_on("/v1/vaults/{}", vault_id, VAULT, "VAULT", api, token, as_json, None, "DELETE"), as_json)


# -- assets and the address book --------------------------------------------------------------------------


@asset_app.command("add")
def asset_add(
    symbol: Annotated[str, typer.Argument(help="Symbol, upper case (ETH, USDC).")],
    kind: Annotated[
        str, typer.Option("--kind", parser=choice(("native", "erc20"), "asset kind"), help="native is ETH.")
    ] = "erc20",
    contract: Annotated[str | None, typer.Option("--contract", help="Token contract address (erc20).")] = None,
    decimals: Annotated[int, typer.Option("--decimals", help="Decimal places of one unit.")] = 18,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Propose registering an asset (admin)."""
    with api_errors():
        if kind not in ("native", "erc20"):
            raise InputError(f"--kind must be native or erc20, got {kind!r}")
        if (kind == "erc20") != (contract is not None):
            raise InputError("an erc20 asset needs --contract; the native asset has none")
        body = {"symbol": symbol, "kind": kind, "contract": contract, "decimals": decimals}
        with connect(api, token) as client:
            proposal = client.post("/v1/assets", body)
    emit_proposal(proposal, as_json)


list_command(
    asset_app, "list", "/v1/assets", ["symbol", "kind", "decimals", "contract", "disabled", "id"], "List the assets."
)
AssetIdArgument = Annotated[str, typer.Argument(metavar="ASSET", help="The asset's symbol or id (harbour asset list).")]


@asset_app.command("disable")
def asset_disable(
    asset_id: AssetIdArgument,
    enable: Annotated[bool, typer.Option("--enable", help="Enable a disabled asset again instead.")] = False,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Propose disabling an asset, no withdrawal of it signed, or with --enable enabling it again (admin)."""
    body = {"disabled": not enable}
    emit_proposal(_post_on("/v1/assets/{}", asset_id, ASSET, "ASSET", api, token, as_json, body, "PATCH"), as_json)


@book_app.command("add")
def book_add(
    name: Annotated[str, typer.Argument(help="Name of the counterparty.")],
    address: Annotated[str, typer.Argument(help="Its address (EIP-55 checksummed if mixed case).")],
    whitelisted: Annotated[bool, typer.Option("--whitelisted", help="Mark as whitelisted for policy rules.")] = False,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Propose an address-book entry (admin)."""
    with api_errors(), connect(api, token) as client:
        proposal = client.post("/v1/address-book", {"name": name, "address": address, "whitelisted": whitelisted})
    emit_proposal(proposal, as_json)


EntryIdArgument = Annotated[str, typer.Argument(metavar="ENTRY", help="The address-book entry's name or id.")]


@book_app.command("whitelist")
def book_whitelist(
    entry_id: EntryIdArgument,
    off: Annotated[bool, typer.Option("--off", help="Take the entry off the whitelist instead.")] = False,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Propose whitelisting an entry, or with --off taking it off the whitelist (admin)."""
    body = {"whitelisted": not off}
    proposal = _post_on("/v1/address-book/{}/whitelist", entry_id, ENTRY, "ENTRY", api, token, as_json, body)
    emit_proposal(proposal, as_json)


@book_app.command("remove")
def book_remove(
    entry_id: EntryIdArgument, api: ApiOption = DEFAULT_API, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """Propose removing an entry (admin)."""
    emit_proposal(_post_on("/v1/address-book/{}/remove", entry_id, ENTRY, "ENTRY", api, token, as_json), as_json)


@book_app.command("rename")
def book_rename(
    entry_id: EntryIdArgument,
    name: Annotated[str, typer.Argument(help="The entry's new name.")],
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Propose a new name for an entry; its address and whitelisting stay (admin)."""
    body = {"name": name}
    proposal = _post_on("/v1/address-book/{}", entry_id, ENTRY, "ENTRY", api, token, as_json, body, "PATCH")
    emit_proposal(proposal, as_json)


list_command(book_app, "list", "/v1/address-book", ["name", "address", "whitelisted", "id"], "List the address book.")


list_command(
    deposit_app,
    "list",
    "/v1/deposits",
    ["asset", "amount", "sender", "state", "block_number", "tx_hash"],
    "Deposits to the vaults' addresses (pending until confirmed).",
)
