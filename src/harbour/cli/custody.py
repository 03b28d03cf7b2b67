"""``harbour custody``: operate a custody deployment from its home directory (not through the API).

- ``init``: a new home (configuration, approval-authority key, audit key), the keys
  encrypted under ``HARBOUR_CUSTODY_PASSPHRASE`` (or a prompted passphrase), which
  ``bootstrap``, ``serve`` and ``audit baseline`` then need in the environment;
- ``encrypt-keys``: encrypt the keys of a home made when they were written in the clear;
- ``bootstrap``: a new organisation from its genesis governance entry, enrolled
  on the signer nodes: its founding admins (each with an approval key; prints
  their API tokens), the admin quorum, and optionally its first users, assets
  and policy;
- ``serve``: the REST API and the signing pipeline, in one process;
- ``add-node``: more signer nodes, each asked for its signed status and refused if it would sign on
  the service's word alone;
- ``status``: the nodes, the chain, the database and the pipeline at a glance;
- ``backup``: a consistent copy of a SQLite database while the service runs;
- ``migrate``: the schema brought to this code's head, with a role that may change it;
- ``harbour audit verify``: recompute the audit log from the database, check
  every signed tree head and every business row against the log's row digests;
  exits 1 at the first entry that does not verify, or listing the rows that do not.

These commands read the database and the keys directly: they are for whoever
runs the service, whereas every other custody command goes through the API.
"""

from __future__ import annotations

import json
import logging
import ssl
from pathlib import Path
from typing import Annotated, Any

import typer

from harbour.cli import output
from harbour.cli.observe import LogFormat, LogFormatOption, LogLevel, LogLevelOption, MetricsListenOption
from harbour.cli.params import HomeOption, InputError, JsonOption, ask_passphrase
from harbour.custody import config as cfg
from harbour.custody import db, homekeys
from harbour.custody.errors import CustodyError, Invalid
from harbour.node.identity import NodeDescriptor

app = typer.Typer(help="Operate a custody deployment: init, bootstrap, serve.", no_args_is_help=True)
log = logging.getLogger("harbour.custody.serve")


DEFAULT_WAIT = 10.0
WaitOption = Annotated[
    float,
    typer.Option("--wait", min=0, max=300, help="Seconds to keep asking a node that does not answer yet."),
]


exit_error = output.fail  # the name these commands' call sites know it by


def load_deployment(home: Path) -> cfg.CustodyConfig:
    try:
        return cfg.CustodyConfig.load(home)
    except CustodyError as exc:
        raise exit_error(exc.detail) from None


def open_deployment(config: cfg.CustodyConfig, *, start: bool) -> cfg.Deployment:
    """The deployment, after a warning about clear keys; a missing home passphrase exits 2, saying which variable."""
    warning = homekeys.plaintext_warning(config.home)
    if warning:
        typer.echo(warning, err=True)
    try:
        return cfg.open_deployment(config, start=start)
    except CustodyError as exc:
        raise exit_error(exc.detail, 2 if "missing" in exc.extra else 1) from None


def _new_home_passphrase() -> str:
    """``HARBOUR_CUSTODY_PASSPHRASE``, or a prompt asked twice; either must clear the strength floor."""
    return ask_passphrase(
        homekeys.PASSPHRASE_ENV, "Custody home passphrase", new=True, missing="the home's keys are encrypted"
    )


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
    dev_chain: Annotated[
        bool,
        typer.Option(
            "--dev-chain",
            help="The JSON-RPC node is a development chain (anvil): allow the faucet (`harbour dev fund`).",
        ),
    ] = False,
    confirmations: Annotated[int, typer.Option("--confirmations", min=1, help="Blocks before confirmed.")] = 1,
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT of the API.")] = "127.0.0.1:8700",
    wait: WaitOption = DEFAULT_WAIT,
    plaintext: Annotated[
        bool,
        typer.Option("--insecure-plaintext", help="Write the authority and audit keys unencrypted (tests only)."),
    ] = False,
    node_tls_cert: Annotated[
        Path | None, typer.Option("--node-tls-cert", help="Client certificate to reach https:// signer nodes with.")
    ] = None,
    node_tls_key: Annotated[
        Path | None, typer.Option("--node-tls-key", help="Private key of --node-tls-cert (owner-readable only).")
    ] = None,
    node_tls_ca: Annotated[
        Path | None, typer.Option("--node-tls-ca", help="CA certificate of the signer nodes' certificates.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a custody home; give the printed authority key to every signer node (`harbour node init --authority`).

    Each node given with --nodes must be running and serve organisations only (`harbour node init
    --organisations-only`): one that would sign on the service's word alone is refused. The authority
    and audit keys are encrypted under HARBOUR_CUSTODY_PASSPHRASE (or a passphrase asked on the
    terminal); serve and bootstrap need it in the environment.
    """
    from harbour.node.tls import TlsError, TlsFiles

    paths = [str(Path(p).resolve()) for p in nodes.split(",") if p]
    if dev_chain and chain == "embedded":
        raise exit_error("--dev-chain is for a JSON-RPC node (--chain URL): the embedded chain is one already", 2)
    if (home / cfg.CONFIG_FILE).exists():  # before asking for a passphrase that would protect nothing new
        raise exit_error(f"{home} is a custody home already")
    try:
        files = TlsFiles.from_options(node_tls_cert, node_tls_key, node_tls_ca)
        context = None if files is None else files.client_context()
    except TlsError as exc:
        raise exit_error(str(exc), 2) from None
    descriptors = []
    for path in paths:
        try:
            descriptors.append(NodeDescriptor.from_json(Path(path).read_bytes()))
        except (OSError, ValueError) as exc:
            raise exit_error(f"signer node descriptor {path}: {exc}") from None
    seen: set[str] = set()
    for descriptor in descriptors:
        if descriptor.name in seen:
            raise exit_error(_same_name(descriptor.name), 2)
        seen.add(descriptor.name)
    if paths:
        refuse_unsafe([Path(p) for p in paths], descriptors, wait, context)
    try:
        secret = None if plaintext else _new_home_passphrase()
    except InputError as exc:
        raise exit_error(str(exc), 2) from None
    if secret is None:
        typer.echo("warning: --insecure-plaintext: the authority and audit keys are written unencrypted", err=True)
    try:
        config = cfg.init_home(
            home,
            passphrase=secret,
            database=database,
            chain=chain,
            confirmations=confirmations,
            nodes=paths,
            listen=listen,
            dev_chain=dev_chain,
            node_tls=None if files is None else files.to_json(),
        )
        config.descriptors()
    except CustodyError as exc:
        raise exit_error(exc.detail, 2 if isinstance(exc, Invalid) else 1) from None
    if as_json:
        doc = {
            "home": str(home),
            "authority_public_key": str(home / "authority" / "authority.pub"),
            "audit_public_key": str(home / cfg.AUDIT_PUBLIC_FILE),
            "database": db.redacted(config.database),
        }
        output.emit(doc, True)
        return
    typer.echo(f"custody home {home} created")
    typer.echo(f"approval authority public key: {home / 'authority' / 'authority.pub'}")
    typer.echo(f"audit public key: {home / cfg.AUDIT_PUBLIC_FILE}")
    typer.echo(f"database: {db.redacted(config.database)}")


@app.command("encrypt-keys")
def encrypt_keys(home: HomeOption, as_json: JsonOption = False) -> None:
    """Encrypt a home's authority and audit keys written in the clear, under HARBOUR_CUSTODY_PASSPHRASE."""
    load_deployment(home)
    if not homekeys.plaintext_keys(home):
        if as_json:
            output.emit({"encrypted": []}, True)
        else:
            typer.echo(f"the keys of {home} are encrypted already")
        return
    try:
        secret = _new_home_passphrase()
        done = homekeys.encrypt_keys(home, secret)
    except InputError as exc:
        raise exit_error(str(exc), 2) from None
    except CustodyError as exc:
        raise exit_error(exc.detail) from None
    if as_json:
        output.emit({"encrypted": [str(path) for path in done]}, True)
        return
    for path in done:
        typer.echo(f"encrypted {path}")


@app.command("add-node")
def add_node(
    home: HomeOption,
    descriptors: Annotated[list[Path], typer.Argument(help="Signer-node descriptor files (descriptor.json).")],
    wait: WaitOption = DEFAULT_WAIT,
    as_json: JsonOption = False,
) -> None:
    """Add signer nodes to the deployment (for vaults created from now on).

    Each must be running and serve organisations only (`harbour node init --organisations-only`, or
    `harbour node approvers --organisations-only` on a stopped node): its status, signed by its identity
    key, is asked, and a node that would sign on the service's word alone is refused with how to fix it.
    """
    config = load_deployment(home)
    configured = config.descriptors()
    known = {d.node_id for d in configured}
    names = {d.name for d in configured}
    added: list[NodeDescriptor] = []
    for path in descriptors:
        resolved = str(path.resolve())
        config.nodes.append(resolved)
        try:
            descriptor = config.descriptors()[-1]
        except CustodyError as exc:
            raise exit_error(exc.detail, 2) from None  # unreadable or not a descriptor
        if descriptor.node_id in known:
            raise exit_error(f"{path}: node {descriptor.name} is configured already")
        if descriptor.name in names:
            raise exit_error(_same_name(descriptor.name), 2)
        known.add(descriptor.node_id)
        names.add(descriptor.name)
        added.append(descriptor)
    from harbour.node.tls import TlsError

    try:
        files = config.node_client_tls()
        context = None if files is None else files.client_context()
    except TlsError as exc:
        raise exit_error(f"node_tls: {exc}", 2) from None
    verdicts = refuse_unsafe(descriptors, added, wait, context)
    authority = cfg.authority_public(home)
    for verdict in verdicts:
        if not verdict.trusts(authority):
            typer.echo(
                f"warning: node {verdict.descriptor.name} does not trust this deployment's approval authority "
                f"({home / 'authority' / 'authority.pub'}): it will refuse every certificate the service issues",
                err=True,
            )
    config.save()
    if as_json:
        output.emit({"nodes": list(config.nodes)}, True)
    else:
        typer.echo(f"{len(config.nodes)} signer node(s) configured")


def _same_name(name: str) -> str:
    return (
        f"another signer node of this deployment is named {name!r}: the service, the governance log and its "
        "readiness tell nodes apart by name, so each must have its own (harbour node init --name)"
    )


def refuse_unsafe(
    paths: list[Path], descriptors: list[NodeDescriptor], wait: float, tls: ssl.SSLContext | None = None
) -> list[Any]:
    """Every node's verdict (:mod:`harbour.custody.nodesafety`); exit 1 naming each unsafe or silent node."""
    from harbour.custody.nodesafety import examine

    verdicts = examine(paths, descriptors, wait=wait, tls=tls)
    problems = [p for p in (v.problem() for v in verdicts) if p is not None]
    for message, hint in problems:
        typer.echo(f"error: {message}", err=True)
        typer.echo(f"hint: {hint}", err=True)
    if problems:
        raise typer.Exit(1)
    return verdicts


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
    deployment = open_deployment(config, start=False)
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
    log_format: LogFormatOption = LogFormat.auto,
    log_level: LogLevelOption = LogLevel.info,
    metrics_listen: MetricsListenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Serve the REST API and run the signing pipeline until interrupted.

    Beyond the loopback interface, serve over TLS (--tls-cert and --tls-key) or
    behind a TLS-terminating proxy: every request carries a bearer token.

    Several of these may run on one PostgreSQL database (each with its own --listen);
    on a SQLite database only one may.

    Logs go to stderr, one line per record (JSON when stderr is not a terminal), and
    each process serves its own metrics with --metrics-listen (docs/custody.md,
    "Observability").
    """
    from harbour.api.authlimit import FailedAuthentications
    from harbour.api.server import Tls, plaintext_warning
    from harbour.api.server import serve as serve_api
    from harbour.cli.observe import configure_logs, metrics_endpoint, unconfigure_logs
    from harbour.util import logs
    from harbour.util.scrape import MetricsListener

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
    try:
        endpoint = metrics_endpoint(metrics_listen)
    except ValueError as exc:
        raise exit_error(str(exc), 2) from None
    warning = plaintext_warning(host.strip("[]"), tls)
    if warning:
        typer.echo(warning, err=True)
    configure_logs(log_format, log_level)
    try:
        deployment = open_deployment(config, start=True)
    except BaseException:
        unconfigure_logs()
        raise
    scheme = "https" if tls else "http"
    url, database = f"{scheme}://{config.listen}", db.redacted(config.database)
    chain = config.chain if config.chain == "embedded" else logs.origin(config.chain)
    if as_json:  # one document when serving starts; errors before it are problem documents
        output.emit({"api": url, "chain": chain, "database": database}, True)
    else:
        typer.echo(f"custody API on {url} (chain: {chain}; database: {database})")
    listener = None
    try:
        if endpoint is not None:
            try:
                listener = MetricsListener(endpoint, deployment.pipeline.metrics.registry).start()
            except OSError as exc:
                raise exit_error(f"--metrics-listen {metrics_listen}: {exc.strerror or exc}") from None
        log.info(
            "serving",
            extra={"listen": f"{scheme}://{config.listen}", "chain": chain, "database": database},
        )
        serve_api(
            deployment.custody,
            host,
            int(port),
            tls=tls,
            trusted_proxies=config.trusted_proxies,
            failed_authentications=FailedAuthentications(audit_interval=config.auth_burst_interval),
            metrics=deployment.pipeline.metrics,
        )
    finally:
        if listener is not None:
            listener.stop()
        deployment.close()
        unconfigure_logs()


@app.command("status")
def status(
    home: HomeOption,
    as_json: JsonOption = False,
) -> None:
    """Summarise the deployment: signer nodes (reachable? safe?), chain, database and pipeline.

    Exits 0 when every part answers and every node serves organisations only and trusts this
    deployment's authority, 1 otherwise (the summary is printed either way).
    """
    from harbour.custody.overview import overview

    config = load_deployment(home)
    report = overview(config)
    if as_json:
        output.emit(report, True)
    else:
        for line in _status_lines(report):
            typer.echo(line)
    if not report["ok"]:
        raise typer.Exit(1)


def _status_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"signer nodes: {len(report['nodes'])}"]
    for node in report["nodes"]:
        state = "unreachable" if not node["reachable"] else ("safe" if node["safe"] else "UNSAFE")
        lines.append(f"  {node['name']}: {state}: {node['detail']}")
        if node["reachable"] and not node["trusts_authority"]:
            lines.append("    it does not trust this deployment's approval authority: it refuses every certificate")
        if node.get("hint"):
            lines.append(f"    fix: {node['hint']}")
    chain = report["chain"]
    where = f"chain {chain['chain_id']} at block {chain['head_block']}" if chain["head_block"] is not None else ""
    lines.append(
        f"chain ({chain['kind']}): {'reachable' if chain['reachable'] else 'NOT reachable'}; {where or chain['detail']}"
    )
    database = report["database"]
    if database["reachable"]:
        lines.append(f"database: reachable; schema revision {database['revision']} ({database['detail']})")
    else:
        lines.append(f"database: NOT reachable; {database['detail']}")
    work = report["pipeline"]
    if work is None:
        lines.append("pipeline: unknown (the database cannot be read)")
    else:
        counts = ", ".join(f"{state} {n}" for state, n in work["withdrawals"].items() if n) or "none"
        lines.append(f"withdrawals: {counts}")
        oldest = work["oldest_waiting"]
        if oldest is not None:
            lines.append(
                f"oldest waiting: {oldest['id']} ({oldest['state']}) since {oldest['created_at']}, "
                f"{oldest['waiting_seconds']} s"
            )
    return lines


@app.command("backup")
def backup(
    home: HomeOption,
    out: Annotated[Path, typer.Option("--out", help="The backup file to create (must not exist).")],
    as_json: JsonOption = False,
) -> None:
    """Copy the deployment's SQLite database with SQLite's online backup API, while serve runs.

    The copy is a consistent snapshot, checked with PRAGMA integrity_check, and
    readable by its owner only. A PostgreSQL database is backed up with pg_dump.
    """
    from harbour.custody.dbbackup import backup_sqlite

    config = load_deployment(home)
    try:
        done = backup_sqlite(config.database, out)
    except CustodyError as exc:
        raise exit_error(exc.detail, 2 if isinstance(exc, Invalid) else 1) from None
    doc = {"path": str(done.path), "bytes": done.size, "revision": done.revision}
    typer.echo(json.dumps(doc, indent=2) if as_json else f"backup of {db.redacted(config.database)} in {done.path}")


@app.command("migrate")
def migrate(
    home: HomeOption,
    database: Annotated[
        str | None,
        typer.Option(
            "--database", help="URL of a role that may change the schema (default: custody.json's); no password."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Apply the schema migrations (custody/migrations) up to this code's head.

    `serve` migrates on start too; run this with the schema owner's role when
    the service's own role may only read and write rows.
    """
    from harbour.custody.dbbackup import migrate as run_migrations

    config = load_deployment(home)
    url = database or config.database
    try:
        before, head = run_migrations(url)
    except CustodyError as exc:
        raise exit_error(exc.detail, 2) from None
    doc = {"database": db.redacted(url), "from": before, "to": head}
    typer.echo(json.dumps(doc, indent=2) if as_json else f"{doc['database']}: schema {before} -> {head}")
