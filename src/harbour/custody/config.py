"""A custody deployment's home directory: configuration, keys, and assembling the service.

Layout (``harbour custody init --home DIR`` writes it)::

    DIR/custody.json       configuration (below)
    DIR/authority/         the approval-authority key the signer nodes trust (authority.key, authority.pub)
    DIR/audit.key          Ed25519 key that signs the audit log's tree heads (PEM, 0600), audit.pub its public key
    DIR/coordinator/       public records of the vault keys (no shares)
    DIR/custody.db         the SQLite database, unless ``database`` points elsewhere

``custody.json``: ``database`` (SQLAlchemy URL; default the SQLite file above),
``chain`` (``"embedded"`` or a JSON-RPC URL), ``dev_chain`` (allow funding helpers on a
JSON-RPC chain, for anvil), ``confirmations``, ``nodes`` (paths of signer-node
descriptor files, relative to DIR), ``listen`` (API address), ``approval_lifetime``
(seconds an approval counts while its transaction waits), ``workers``, ``lease``
(seconds a service process's signing lease of a withdrawal lasts, see
:mod:`harbour.custody.claims`),
``webhook_allow_private`` (let webhook URLs reach loopback and private addresses),
``trusted_proxies`` (addresses or CIDR blocks of reverse proxies whose ``X-Forwarded-For``
is believed; empty by default, so the client address is always the socket's peer),
``auth_burst_interval`` (seconds: a credential's ``credential.auth-burst`` audit event
is written at most once in this time per service process; default an hour),
``webhook_max_endpoints`` (enabled webhook endpoints an organisation may have),
``webhook_deadline`` (seconds one webhook attempt may take in all),
``node_tls`` (``{"cert", "key", "ca"}``, absolute paths: the client certificate and
key the service reaches ``https://`` signer nodes with, and the CA of the nodes'
certificates; :mod:`harbour.node.tls`).
``DIR/webhook.key`` holds the master of the organisations' webhook signing keys
(:mod:`harbour.custody.webhooksig`); every service process on one database must
share it, so it lives in the home (created on first use, 0600). The admin
quorum is not configuration: each organisation's genesis sets it, and only its
governance log changes it.

Both private keys are encrypted under ``HARBOUR_CUSTODY_PASSPHRASE``
(:mod:`harbour.custody.homekeys`); :meth:`CustodyConfig.load` reads it from the
environment, and the service refuses to open without it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harbour.custody import claims, db, homekeys
from harbour.custody.errors import Invalid
from harbour.custody.settings import DAY
from harbour.node import approval
from harbour.node.identity import NodeDescriptor
from harbour.node.tls import TlsError, TlsFiles
from harbour.util.files import write_atomic

if TYPE_CHECKING:  # the service's own modules (web3 among them) load only when a deployment is opened
    from harbour.chains.evm import EvmClient
    from harbour.custody.pipeline import Pipeline
    from harbour.custody.service import Custody
    from harbour.custody.signer import Signer

CONFIG_FILE = "custody.json"
AUDIT_KEY_FILE = homekeys.AUDIT_KEY_FILE
AUDIT_PUBLIC_FILE = homekeys.AUDIT_PUBLIC_FILE
WEBHOOK_KEY_FILE = "webhook.key"
_KEYS = {
    "database",
    "chain",
    "dev_chain",
    "confirmations",
    "nodes",
    "listen",
    "approval_lifetime",
    "workers",
    "webhook_allow_private",
    "webhook_max_endpoints",
    "webhook_deadline",
    "lease",
    "trusted_proxies",
    "auth_burst_interval",
    "node_tls",
}


@dataclass
class CustodyConfig:
    home: Path
    database: str
    chain: str = "embedded"
    dev_chain: bool = False
    confirmations: int = 1
    nodes: list[str] = field(default_factory=list)
    listen: str = "127.0.0.1:8700"
    approval_lifetime: int = DAY
    workers: int = 16
    webhook_allow_private: bool = False
    webhook_max_endpoints: int = 20
    webhook_deadline: float = 15.0
    lease: int = claims.DEFAULT_LEASE
    trusted_proxies: list[str] = field(default_factory=list)
    auth_burst_interval: int = 3600
    node_tls: dict[str, str] | None = None
    passphrase: str | None = field(default=None, repr=False, compare=False)
    """The home's key passphrase (never saved): from init, or from the environment on load."""

    @classmethod
    def load(cls, home: Path) -> CustodyConfig:
        path = Path(home) / CONFIG_FILE
        try:
            obj = json.loads(path.read_text())
        except OSError as exc:
            raise Invalid(
                f"cannot read {path}: {exc.strerror}; run `harbour custody init --home {home}` first"
            ) from None
        except json.JSONDecodeError as exc:
            raise Invalid(f"{path} is not JSON: {exc}") from None
        if not isinstance(obj, dict) or not set(obj) <= _KEYS or "database" not in obj:
            raise Invalid(f"{path}: expected an object with database and some of {sorted(_KEYS)}")
        config = cls(home=Path(home), **obj)
        config.check()
        config.passphrase = homekeys.env_passphrase()
        return config

    def check(self) -> None:
        if not isinstance(self.database, str) or not self.database.startswith(("sqlite", "postgresql")):
            raise Invalid("database must be an sqlite:// or postgresql:// URL")
        if not isinstance(self.chain, str) or not (
            self.chain == "embedded" or self.chain.startswith(("http://", "https://"))
        ):
            raise Invalid("chain must be 'embedded' or an http(s) JSON-RPC URL")
        for name in (
            "confirmations",
            "approval_lifetime",
            "workers",
            "webhook_max_endpoints",
            "lease",
            "auth_burst_interval",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise Invalid(f"{name} must be a positive integer")
        if type(self.dev_chain) is not bool:
            raise Invalid("dev_chain must be true or false")
        deadline = self.webhook_deadline
        if type(deadline) not in (int, float) or not 0 < deadline <= 30:
            raise Invalid("webhook_deadline must be a number of seconds in (0, 30] (half the webhook claim lease)")
        if type(self.webhook_allow_private) is not bool:
            raise Invalid("webhook_allow_private must be true or false")
        if not isinstance(self.nodes, list) or not all(isinstance(n, str) for n in self.nodes):
            raise Invalid("nodes must be a list of descriptor file paths")
        if not isinstance(self.trusted_proxies, list):
            raise Invalid("trusted_proxies must be a list of IP addresses or CIDR blocks")
        for proxy in self.trusted_proxies:
            try:
                if not isinstance(proxy, str):
                    raise TypeError(proxy)
                ipaddress.ip_network(proxy, strict=False)
            except (TypeError, ValueError):
                raise Invalid(f"trusted_proxies: {proxy!r} is not an IP address or CIDR block") from None

        if self.node_tls is not None:
            try:
                TlsFiles.from_json(self.node_tls)
            except TlsError as exc:
                raise Invalid(f"node_tls: {exc}") from None

    def node_client_tls(self) -> TlsFiles | None:
        """The files the service reaches ``https://`` nodes with (checked in :meth:`check`)."""
        return None if self.node_tls is None else TlsFiles.from_json(self.node_tls)

    def save(self) -> None:
        body = {k: getattr(self, k) for k in sorted(_KEYS)}
        write_atomic(self.home / CONFIG_FILE, (json.dumps(body, indent=2) + "\n").encode(), mode=0o644)

    def descriptors(self) -> list[NodeDescriptor]:
        out = []
        for name in self.nodes:
            path = self.home / name
            try:
                out.append(NodeDescriptor.from_json(path.read_bytes()))
            except (OSError, ValueError) as exc:
                raise Invalid(f"signer node descriptor {path}: {exc}") from None
        return out


def init_home(
    home: Path, *, passphrase: str | None, database: str | None = None, chain: str = "embedded", **options: Any
) -> CustodyConfig:
    """A new home: configuration, authority key and audit key (refuses an existing home).

    The keys are encrypted under ``passphrase``; None writes them in the clear, for tests only.
    """
    home = Path(home)
    if (home / CONFIG_FILE).exists():
        raise Invalid(f"{home} is a custody home already")
    if database is not None and db.carries_password(database):
        raise Invalid(
            "the database URL carries a password, which custody.json would keep: give the password to libpq "
            "instead (~/.pgpass, or $PGPASSWORD in the service's environment) and the URL without it"
        )
    # The home holds the database (SQLite), the keys and the configuration: its owner's alone.
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)
    config = CustodyConfig(
        home=home, database=database or f"sqlite:///{home.resolve() / 'custody.db'}", chain=chain, **options
    )
    config.check()
    homekeys.create(home, passphrase)
    config.passphrase = passphrase
    config.save()
    return config


def authority_public(home: Path) -> bytes:
    """The authority's public key, from ``authority.pub``: no passphrase needed."""
    path = Path(home) / homekeys.AUTHORITY_DIR / approval.PUBLIC_FILE
    try:
        return approval.parse_public_file(path.read_bytes())[1].public_bytes_raw()
    except OSError as exc:
        raise Invalid(f"cannot read {path}: {exc.strerror}") from None
    except approval.AuthorityKeyError as exc:
        raise Invalid(f"{path}: {exc}") from None


def audit_public_key(home: Path) -> str:
    """The audit log's public key (hex), from the home's ``audit.pub``: no passphrase needed."""
    return homekeys.audit_public_hex(Path(home))


def audit_signing_key(home: Path, passphrase: str | None = None) -> Ed25519PrivateKey:
    """The key that signs the audit log: the service's, and ``harbour audit baseline``'s.

    ``passphrase`` defaults to ``HARBOUR_CUSTODY_PASSPHRASE``.
    """
    return homekeys.audit_key(Path(home), passphrase if passphrase is not None else homekeys.env_passphrase())


def webhook_master_key(home: Path) -> bytes:
    """The webhook master key of the home, made on first use (O_EXCL: processes starting together agree on one)."""
    path = Path(home) / WEBHOOK_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
            f.flush()
            os.fsync(f.fileno())
    for _ in range(50):  # another process may have created it and not yet written it
        text = path.read_text().strip()
        if text:
            break
        time.sleep(0.02)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise Invalid(f"{path} is not a webhook master key (64 hex digits)")
    return key


@dataclass
class Deployment:
    """An assembled service: the custody object, its pipeline, and what they run on."""

    config: CustodyConfig
    custody: Custody
    pipeline: Pipeline
    chain: EvmClient
    signer: Signer
    sole: IO[bytes] | None = None
    """On SQLite, the lock file this service holds (:func:`harbour.custody.claims.single_process`)."""

    def close(self) -> None:
        self.pipeline.stop()
        self.custody.dispatcher.close()
        self.signer.close()
        self.chain.close()
        if self.sole is not None:
            self.sole.close()


def open_deployment(
    config: CustodyConfig,
    *,
    chain: EvmClient | None = None,
    start: bool = True,
    pipeline_options: dict[str, Any] | None = None,
) -> Deployment:
    """Migrate the database, connect the chain and the nodes, and (with ``start``) start the pipeline.

    With ``start`` on a SQLite file, refuses (:class:`Invalid`) while another service runs on it.
    """
    sole = claims.single_process(config.database) if start else None
    try:
        return _open(config, chain, start, pipeline_options, sole)
    except BaseException:
        if sole is not None:
            sole.close()
        raise


def _open(
    config: CustodyConfig,
    chain: EvmClient | None,
    start: bool,
    pipeline_options: dict[str, Any] | None,
    sole: IO[bytes] | None,
) -> Deployment:
    from harbour.chains.evm import EvmClient
    from harbour.custody.audit import AuditLog
    from harbour.custody.pipeline import Pipeline
    from harbour.custody.service import Custody, Settings
    from harbour.custody.signer import Signer

    # The keys first: a missing or wrong passphrase, or a missing or exposed TLS key
    # file, is the operator's to fix, and is refused before anything is opened.
    authority = homekeys.authority_key(config.home, config.passphrase)
    audit = AuditLog(homekeys.audit_key(config.home, config.passphrase))
    tls = config.node_client_tls()
    try:
        context = None if tls is None else tls.client_context()
    except TlsError as exc:
        raise Invalid(f"node_tls: {exc}") from None
    engine = db.make_engine(config.database)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    if chain is None:
        chain = (
            EvmClient.embedded()
            if config.chain == "embedded"
            else EvmClient.connect(config.chain, dev=config.dev_chain)
        )
    signer = Signer(config.descriptors(), authority, config.home / "coordinator", tls=context)
    settings = Settings(
        confirmations=config.confirmations,
        approval_lifetime=config.approval_lifetime,
        webhook_allow_private=config.webhook_allow_private,
        webhook_max_endpoints=config.webhook_max_endpoints,
        webhook_deadline=float(config.webhook_deadline),
    )
    custody = Custody(
        sessions,
        chain,
        signer,
        audit,
        settings,
        readers=db.session_factory(db.readonly(engine)),
        webhook_key=webhook_master_key(config.home),
    )
    pipeline = Pipeline(custody, **{"workers": config.workers, "lease": config.lease, **(pipeline_options or {})})
    if start:
        pipeline.start()
    return Deployment(config, custody, pipeline, chain, signer, sole)


def env_home() -> Path | None:
    value = os.environ.get("HARBOUR_CUSTODY_HOME")
    return Path(value) if value else None
