"""``harbour custody``: operate a custody deployment from its home directory (not through the API).

- ``init``: a new home (configuration, approval-authority key, audit key);
- ``bootstrap``: a new organisation from its genesis governance entry, enrolled
  on the signer nodes: its founding admins (each with an approval key; prints
  their API tokens), the admin quorum, and optionally its first users, assets
  and policy;
- ``serve``: the REST API and the signing pipeline, in one process;
- ``harbour audit verify``: recompute the audit log from the database, check
  every signed tree head and every business row against the log's row digests;
  exits 1 at the first entry that does not verify, or listing the rows that do not.

These commands read the database and the keys directly: they are for whoever
runs the service, whereas every other custody command goes through the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from harbour.cli import output
from harbour.cli.params import HomeOption, JsonOption
from harbour.custody import config as cfg
from harbour.custody import db
from harbour.custody.errors import CustodyError

app = typer.Typer(help="Operate a custody deployment: init, bootstrap, serve.", no_args_is_help=True)


exit_error = output.fail  # the name these commands' call sites know it by


def load_deployment(home: Path) -> cfg.CustodyConfig:
    try:
        return cfg.CustodyConfig.load(home)
    except CustodyError as exc:
        raise exit_error(exc.detail) from None


@app.command("init")
def init(
    home: HomeOption,
    nodes: Annotated[
        str, typer.Option("--nodes", help="Comma-separated signer-node descriptor files (descriptor.json).")
    ] = "",
    database: Annotated[
        str | None, typer.Option("--database", help="SQLAlchemy URL (default: HOME/custody.db, SQLite).")
    ] = None,
    chain: Annotated[str, typer.Option("--chain", help="'embedded' or a JSON-RPC URL.")] = "embedded",
    confirmations: Annotated[int, typer.Option("--confirmations", min=1, help="Blocks before confirmed.")] = 1,
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT of the API.")] = "127.0.0.1:8700",
    as_json: JsonOption = False,
) -> None:
    """Create a custody home; give the printed authority key to every signer node (`harbour node init --authority`)."""
    paths = [str(Path(p).resolve()) for p in nodes.split(",") if p]
    try:
        config = cfg.init_home(
            home, database=database, chain=chain, confirmations=confirmations, nodes=paths, listen=listen
        )
        config.descriptors()
    except CustodyError as exc:
        raise exit_error(exc.detail) from None
    if as_json:
        doc = {
            "home": str(home),
            "authority_public_key": str(home / "authority" / "authority.pub"),
            "database": db.redacted(config.database),
        }
        output.emit(doc, True)
        return
    typer.echo(f"custody home {home} created")
    typer.echo(f"approval authority public key: {home / 'authority' / 'authority.pub'}")
    typer.echo(f"database: {db.redacted(config.database)}")


@app.command("add-node")
def add_node(
    home: HomeOption,
    descriptors: Annotated[list[Path], typer.Argument(help="Signer-node descriptor files (descriptor.json).")],
    as_json: JsonOption = False,
) -> None:
    """Add signer nodes to the deployment (for vaults created from now on)."""
    config = load_deployment(home)
    known = {d.node_id for d in config.descriptors()}
    for path in descriptors:
        resolved = str(path.resolve())
        config.nodes.append(resolved)
        try:
            added = config.descriptors()[-1]
        except CustodyError as exc:  # unreadable or not a descriptor: unusable input
            raise exit_error(exc.detail, 2) from None
        if added.node_id in known:
            raise exit_error(f"{path}: node {added.name} is configured already")
        known.add(added.node_id)
    config.save()
    if as_json:
        output.emit({"nodes": list(config.nodes)}, True)
    else:
        typer.echo(f"{len(config.nodes)} signer node(s) configured")


def _founder(text: str, default_roles: tuple[str, ...]) -> Any:
    """``NAME:KEY`` (an admin) or ``NAME:ROLE[,ROLE...][:KEY]`` (any user) as a genesis user."""
    from harbour.custody.genesis import Founder

    parts = text.split(":")
    if default_roles:
        if len(parts) != 2:
            raise exit_error(f"--admin takes NAME:APPROVAL_KEY, got {text!r}", 2)
        return Founder(parts[0], default_roles, parts[1].strip().lower())
    if len(parts) not in (2, 3):
        raise exit_error(f"--user takes NAME:ROLE[,ROLE...][:APPROVAL_KEY], got {text!r}", 2)
    key = parts[2].strip().lower() if len(parts) == 3 else None
    return Founder(parts[0], tuple(r for r in parts[1].split(",") if r), key)


def _asset(text: str) -> Any:
    """``SYMBOL`` (the native coin) or ``SYMBOL:CONTRACT:DECIMALS`` (an ERC-20 token)."""
    from harbour.custody.genesis import FoundingAsset

    parts = text.split(":")
    if len(parts) == 1:
        return FoundingAsset(parts[0])
    if len(parts) != 3 or not parts[2].isdigit():
        raise exit_error(f"--asset takes SYMBOL or SYMBOL:CONTRACT:DECIMALS, got {text!r}", 2)
    return FoundingAsset(parts[0], "erc20", parts[1], int(parts[2]))


@app.command("bootstrap")
def bootstrap(
    home: HomeOption,
    org: Annotated[str, typer.Option("--org", help="Organisation name.")],
    admin: Annotated[
        list[str],
        typer.Option("--admin", help="A founding admin as NAME:APPROVAL_KEY (hex Ed25519 public key); repeatable."),
    ],
    quorum: Annotated[
        int, typer.Option("--quorum", min=1, help="Admins besides the proposer who sign every governance change.")
    ] = 1,
    user: Annotated[
        list[str] | None,
        typer.Option("--user", help="Another first user as NAME:ROLE[,ROLE...][:APPROVAL_KEY]; repeatable."),
    ] = None,
    asset: Annotated[
        list[str] | None,
        typer.Option("--asset", help="An asset: SYMBOL (the native coin) or SYMBOL:CONTRACT:DECIMALS; repeatable."),
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Initial policy document (JSON); default: deny everything.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create an organisation from its genesis governance entry; prints each admin's API token (shown once).

    The genesis is enrolled on every configured signer node first (nothing is
    created if one cannot be reached); compare the printed genesis hash with the
    one each node holds. With fewer admins than the quorum needs (the proposer and
    QUORUM others), nothing in the genesis can ever be changed.
    """
    config = load_deployment(home)
    founders = [_founder(a, ("admin",)) for a in admin] + [_founder(u, ()) for u in user or []]
    assets = [_asset(a) for a in asset or []]
    document: dict[str, Any] | None = None
    if policy is not None:
        from harbour.governance.policy import Policy, PolicyError

        try:
            document = Policy.from_json(policy.read_bytes()).to_document()
        except (OSError, PolicyError) as exc:
            raise exit_error(f"{policy}: {exc}", 2) from None
    deployment = cfg.open_deployment(config, start=False)
    try:
        out = deployment.custody.bootstrap(org, founders, quorum=quorum, assets=assets, policy=document)
    except CustodyError as exc:
        raise exit_error(exc.detail) from None
    finally:
        deployment.close()
    output.emit(out, True)  # the tokens, once: a document in either mode (it is what the caller keeps)


@app.command("serve")
def serve(
    home: HomeOption,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate (chain) to serve the API over HTTPS.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key of --tls-cert.")] = None,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            help="HOST:PORT to serve on instead of the configuration's (several processes on one PostgreSQL).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Serve the REST API and run the signing pipeline until interrupted.

    Beyond the loopback interface, serve over TLS (--tls-cert and --tls-key) or
    behind a TLS-terminating proxy: every request carries a bearer token.

    Several of these may run on one PostgreSQL database (each with its own --listen);
    on a SQLite database only one may.
    """
    from harbour.api.authlimit import FailedAuthentications
    from harbour.api.server import Tls, plaintext_warning
    from harbour.api.server import serve as serve_api

    if (tls_cert is None) != (tls_key is None):
        raise exit_error("give both --tls-cert and --tls-key, or neither", 2)
    tls = None
    if tls_cert is not None and tls_key is not None:
        for path in (tls_cert, tls_key):
            if not path.is_file():
                raise exit_error(f"{path}: no such file", 2)
        tls = Tls(tls_cert, tls_key)
    config = load_deployment(home)
    if listen is not None:
        config.listen = listen
    host, _, port = config.listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise exit_error(f"--listen takes HOST:PORT, got {config.listen!r}", 2)
    warning = plaintext_warning(host.strip("[]"), tls)
    if warning:
        typer.echo(warning, err=True)
    try:
        deployment = cfg.open_deployment(config)
    except CustodyError as exc:
        raise exit_error(exc.detail) from None
    scheme = "https" if tls else "http"
    url, database = f"{scheme}://{config.listen}", db.redacted(config.database)
    if as_json:  # one document when serving starts; errors before it are problem documents
        output.emit({"api": url, "chain": config.chain, "database": database}, True)
    else:
        typer.echo(f"custody API on {url} (chain: {config.chain}; database: {database})")
    try:
        serve_api(
            deployment.custody,
            host,
            int(port),
            tls=tls,
            trusted_proxies=config.trusted_proxies,
            failed_authentications=FailedAuthentications(audit_interval=config.auth_burst_interval),
        )
    finally:
        deployment.close()
