"""A signer node's directory: its configuration file, and creating a new node.

``harbour node init`` calls :func:`init_node`, which makes the directory a
:class:`~harbour.node.service.NodeService` opens: the identity keys (generated
here, stored only encrypted in the node's secret store), ``node.json`` (where to
listen, which approval authorities and approvers to trust, the session timeout,
whether it serves organisations only, and for a node that serves mutual TLS its certificate
files: :mod:`harbour.node.tls`)
and ``descriptor.json`` (the public descriptor other nodes and the coordinator
are given).

``node.json`` decides whose word the node takes (and, for a cold node, where its
rollback counter lives), so a copy is sealed in the store and the node refuses to
start if the file differs. It changes only through
:func:`update_approvers` (``harbour node approvers``), which needs the store's
passphrase or PIN like starting the node does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import cbor2

from harbour.node import approval, compromise, nonces, quorum, signlog
from harbour.node.counter import CounterError, check_setting, create_counter
from harbour.node.hsm import Pkcs11Config
from harbour.node.identity import IdentityError, NodeDescriptor, NodeIdentity, check_name, check_url
from harbour.node.rotation import Rotation, RotationError, rotated_key_records, rotation_id
from harbour.node.store import SecretStore, StoreError
from harbour.node.tls import TlsError, TlsFiles
from harbour.util.files import write_atomic

PASSPHRASE_ENV: Final = "HARBOUR_NODE_PASSPHRASE"  # noqa: S105 (the variable's name, not a secret)
PIN_ENV: Final = "HARBOUR_NODE_PIN"
"""Where a starting node finds the store's passphrase or the token's PIN: the environment, never a flag."""
CONFIG_FILE: Final = "node.json"
DESCRIPTOR_FILE: Final = "descriptor.json"
STORE_DIR: Final = "store"
LEDGER_FILE: Final = "nonces.ledger"
LOG_FILE: Final = "sign.log"
CONFIG_FORMAT: Final = "harbour-node"
CONFIG_VERSION: Final = 1
DEFAULT_SESSION_TIMEOUT: Final = 120
CONFIG_OBJECT: Final = "config"
"""The store object holding the exact node.json written at init."""


MAX_APPROVERS: Final = 1024
_BASE_KEYS: Final = frozenset({"format", "version", "name", "url", "listen", "authorities", "session_timeout"})
_APPROVAL_KEYS: Final = frozenset({"approvers", "min_approvals", "require_evidence"})
"""Written by every node; a node.json from before them (all three missing) means none set."""
_COUNTER_KEY: Final = "counter"
"""Written by every node since rollback counters exist; missing means none."""
_ORGANISATIONS_ONLY_KEY: Final = "organisations_only"
"""Written by every node since the setting exists; missing means false."""
_TLS_KEY: Final = "tls"
"""Only in the node.json of a node that serves mutual TLS (:mod:`harbour.node.tls`)."""


class NodeStartError(RuntimeError):
    """The node cannot start: wrong passphrase or PIN, damaged files, bad configuration."""


def check_approval_settings(approvers: Sequence[bytes], min_approvals: int, require_evidence: bool) -> None:
    """ValueError unless the three approval settings make sense together."""
    if len(approvers) > MAX_APPROVERS:
        raise ValueError(f"at most {MAX_APPROVERS} approvers")
    for key in approvers:
        try:
            quorum.check_public_key(key)
        except quorum.EvidenceError as exc:
            raise ValueError(str(exc)) from None
    if len(set(approvers)) != len(approvers):
        raise ValueError("an approver key is listed twice")
    if type(min_approvals) is not int or not 0 <= min_approvals <= quorum.MAX_APPROVALS:
        raise ValueError(f"min_approvals must be an integer in 0..{quorum.MAX_APPROVALS}")
    if approvers and min_approvals > len(approvers):
        raise ValueError(f"min_approvals {min_approvals} is more than the {len(approvers)} trusted approvers")
    if approvers and min_approvals < 1:
        # With a floor of 0 a service can claim a quorum of no groups, and the list would check nothing.
        raise ValueError("a node with a trusted approver list must require at least 1 approval (min_approvals)")
    if type(require_evidence) is not bool:
        raise ValueError("require_evidence must be true or false")


def signs_on_authority_alone(
    *, organisations_only: bool, approvers: int, require_evidence: bool, min_approvals: int
) -> bool:
    """Whether a node so configured signs with some key on an approval authority's certificate alone.

    Not when it serves organisations only (every key it signs with is judged from
    its organisation's governance log), nor when it insists on evidence with at
    least one approval from ``approvers`` of its own list; otherwise a key of no
    organisation is signed for whatever the authority's holder certifies.
    """
    if organisations_only:
        return False
    return not (approvers > 0 and require_evidence and min_approvals >= 1)


@dataclass(frozen=True)
class NodeConfig:
    """``node.json``.

    ``approvers`` are the raw Ed25519 keys of the people whose approvals the node
    accepts in a certificate's evidence (empty: the quorum members the evidence
    names); ``min_approvals`` the fewest distinct approvers it signs on, whatever the
    quorum says; ``require_evidence`` that it signs nothing without evidence (and so
    only with threshold-ECDSA keys).
    """

    name: str
    url: str
    listen_host: str
    listen_port: int
    authorities: tuple[bytes, ...]
    session_timeout: int = DEFAULT_SESSION_TIMEOUT
    approvers: tuple[bytes, ...] = ()
    min_approvals: int = 0
    require_evidence: bool = False
    counter: dict[str, str] | None = None
    """Where the rollback counter lives (:func:`harbour.node.counter.check_setting`), or None."""
    organisations_only: bool = False
    """Make, sign with, refresh and reshare only keys of an enrolled organisation (:mod:`harbour.node.orgs`).

    What a node serving a custody service needs: a key of no organisation is signed
    on the approval authority's certificate (and version-1 evidence), which that
    service holds, so the service alone could make such a key and sign with it.
    """

    @property
    def signs_on_authority_alone(self) -> bool:
        """Whether a certificate from the authority is all the node needs to sign with some key."""
        return signs_on_authority_alone(
            organisations_only=self.organisations_only,
            approvers=len(self.approvers),
            require_evidence=self.require_evidence,
            min_approvals=self.min_approvals,
        )

    tls: TlsFiles | None = None
    """Its certificate, key and the CA of the clients it accepts, when it serves mutual TLS."""

    @property
    def trusted_approvers(self) -> frozenset[bytes] | None:
        """What :func:`harbour.node.quorum.check_evidence` takes: None when no list is configured."""
        return frozenset(self.approvers) if self.approvers else None

    def to_json(self) -> str:
        tls = {} if self.tls is None else {_TLS_KEY: self.tls.to_json()}
        return json.dumps(
            {
                **tls,
                "format": CONFIG_FORMAT,
                "version": CONFIG_VERSION,
                "name": self.name,
                "url": self.url,
                "listen": f"{self.listen_host}:{self.listen_port}",
                "authorities": [a.hex() for a in self.authorities],
                "session_timeout": self.session_timeout,
                "approvers": [a.hex() for a in self.approvers],
                "min_approvals": self.min_approvals,
                "require_evidence": self.require_evidence,
                "counter": self.counter,
                _ORGANISATIONS_ONLY_KEY: self.organisations_only,
            },
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> NodeConfig:
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise NodeStartError(f"{CONFIG_FILE} is not valid JSON: {exc}") from exc
        keys = _BASE_KEYS | _APPROVAL_KEYS
        shapes = (
            keys | {_COUNTER_KEY, _ORGANISATIONS_ONLY_KEY},
            keys | {_COUNTER_KEY, _ORGANISATIONS_ONLY_KEY, _TLS_KEY},
            keys | {_COUNTER_KEY},
            keys,
            _BASE_KEYS,
        )
        if not isinstance(obj, dict) or set(obj) not in shapes or obj["format"] != CONFIG_FORMAT:
            raise NodeStartError(f"{CONFIG_FILE} is not a Harbour node configuration (fields: {sorted(keys)})")
        if obj["version"] != CONFIG_VERSION:
            raise NodeStartError(f"unsupported {CONFIG_FILE} version {obj['version']!r}")
        try:
            host, port = parse_listen(obj["listen"])
            authorities = tuple(
                approval.public_key_from_raw(bytes.fromhex(a)).public_bytes_raw() for a in obj["authorities"]
            )
            timeout = obj["session_timeout"]
            if type(timeout) is not int or not 1 <= timeout <= 3600:
                raise ValueError("session_timeout must be 1..3600 seconds")
            texts = obj.get("approvers", [])
            if not isinstance(texts, list) or not all(isinstance(t, str) and _is_hex64(t) for t in texts):
                raise ValueError("approvers must be a list of Ed25519 public keys, 64 lowercase hex digits each")
            approvers = tuple(bytes.fromhex(t) for t in texts)
            min_approvals, require_evidence = obj.get("min_approvals", 0), obj.get("require_evidence", False)
            check_approval_settings(approvers, min_approvals, require_evidence)
            counter = check_setting(obj.get(_COUNTER_KEY))
            organisations_only = obj.get(_ORGANISATIONS_ONLY_KEY, False)
            if type(organisations_only) is not bool:
                raise ValueError(f"{_ORGANISATIONS_ONLY_KEY} must be true or false")
            tls = TlsFiles.from_json(obj[_TLS_KEY]) if _TLS_KEY in obj else None
            url = check_url(obj["url"])
            if tls is not None and not url.startswith("https://"):
                raise ValueError(f"a node that serves TLS is reached at an https:// URL, not {url}")
            return cls(
                check_name(obj["name"]),
                url,
                host,
                port,
                authorities,
                timeout,
                approvers,
                min_approvals,
                require_evidence,
                counter,
                organisations_only,
                tls,
            )
        except (ValueError, TypeError, IdentityError, approval.AuthorityKeyError) as exc:
            raise NodeStartError(f"{CONFIG_FILE}: {exc}") from exc


def _is_hex64(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def parse_listen(listen: object) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``) -> (host, port)."""
    if not isinstance(listen, str) or ":" not in listen:
        raise ValueError(f"listen address must be HOST:PORT, got {listen!r}")
    host, _, port = listen.rpartition(":")
    if not port.isdigit() or not 1 <= int(port) <= 65535 or not host:
        raise ValueError(f"listen address must be HOST:PORT with a port 1..65535, got {listen!r}")
    check_url(f"http://{host}:{int(port)}")
    return host.strip("[]"), int(port)


def store_secrets(directory: Path) -> tuple[str | None, str | None]:
    """The passphrase or the PIN from the environment, whichever the node's store.json asks for."""
    try:
        kind = json.loads((directory / "store" / "store.json").read_text()).get("kek", {}).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None
    passphrase, pin = os.environ.get(PASSPHRASE_ENV), os.environ.get(PIN_ENV)
    return (None, pin) if kind == "pkcs11" else (passphrase, None)


def init_node(
    directory: Path,
    *,
    name: str,
    listen: str,
    authorities: list[bytes],
    url: str | None = None,
    passphrase: str | None = None,
    pkcs11: Pkcs11Config | None = None,
    pin: str | None = None,
    kdf_n: int | None = None,
    session_timeout: int = DEFAULT_SESSION_TIMEOUT,
    approvers: Sequence[bytes] = (),
    min_approvals: int = 0,
    require_evidence: bool = False,
    counter: dict[str, str] | None = None,
    organisations_only: bool = False,
    tls: TlsFiles | None = None,
) -> NodeDescriptor:
    """Create a node directory: identity (encrypted), configuration, public descriptor, and its counter.

    ``counter`` (``{"kind": "pkcs11"}`` or ``{"kind": "file", "path": ABS}``) is created
    here at value 0; a cold node needs one to keep signing sessions between files.
    With ``tls`` the node serves mutual TLS (its URL is then ``https://``).
    """
    directory = Path(directory)
    if (directory / CONFIG_FILE).exists():
        raise NodeStartError(f"{directory} already holds a node ({CONFIG_FILE} exists)")
    if not authorities:
        raise NodeStartError("a node needs at least one approval authority's public key, or it can approve nothing")
    host, port = parse_listen(listen)
    shown = f"[{host}]" if ":" in host else host
    url = url or f"{'https' if tls else 'http'}://{shown}:{port}"
    if tls is not None:
        if not url.startswith("https://"):
            raise NodeStartError(f"a node that serves TLS is reached at an https:// URL, not {url}")
        try:
            tls.server_context()
        except TlsError as exc:
            raise NodeStartError(str(exc)) from None
    if not 1 <= session_timeout <= 3600:
        raise NodeStartError("the session timeout is 1..3600 seconds")
    try:
        check_approval_settings(approvers, min_approvals, require_evidence)
        counter = check_setting(counter)
    except ValueError as exc:
        raise NodeStartError(str(exc)) from None
    if counter is not None and counter["kind"] == "pkcs11" and pkcs11 is None:
        raise NodeStartError("a PKCS#11 rollback counter lives on the store's token: create the node with --pkcs11")
    if (
        counter is not None
        and counter["kind"] == "file"
        and Path(counter["path"]).resolve().is_relative_to(directory.resolve())
    ):
        raise NodeStartError("the rollback counter must live outside the node directory, or a copy of it rolls back")
    if counter is not None and counter["kind"] == "file" and Path(counter["path"]).exists():
        raise NodeStartError(f"{counter['path']} exists: a rollback counter file is never shared or reused")
    config = NodeConfig(
        check_name(name),
        check_url(url),
        host,
        port,
        tuple(authorities),
        session_timeout,
        tuple(approvers),
        min_approvals,
        require_evidence,
        counter,
        organisations_only,
        tls,
    )
    config_text = config.to_json() + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {} if kdf_n is None else {"kdf_n": kdf_n}
    store = SecretStore.create(directory / STORE_DIR, passphrase=passphrase, pkcs11=pkcs11, pin=pin, **options)
    try:
        identity = NodeIdentity.generate()
        store.put("identity", identity.to_bytes())
        # node.json says which authorities to obey; a copy sealed in the store lets the
        # node notice if someone who can write the directory (but not the store) edits it.
        store.put(CONFIG_OBJECT, config_text.encode())
        try:
            create_counter(counter, store_id=store.store_id, pkcs11_config=store.pkcs11, pin=pin)
        except CounterError as exc:
            raise NodeStartError(f"cannot create the rollback counter: {exc}") from exc
    finally:
        store.close()
    descriptor = identity.descriptor(config.name, config.url)

    write_atomic(directory / DESCRIPTOR_FILE, (descriptor.to_json() + "\n").encode(), mode=0o644, overwrite=False)
    write_atomic(directory / CONFIG_FILE, config_text.encode(), mode=0o644, overwrite=False)
    return descriptor


@contextlib.contextmanager
def stopped_node(directory: Path, *, passphrase: str | None = None, pin: str | None = None) -> Iterator[SecretStore]:
    """A stopped node's store, opened with its passphrase or PIN, the node locked (its ledger's lock) meanwhile."""
    directory = Path(directory)
    if not (directory / CONFIG_FILE).exists():
        raise NodeStartError(f"no node in {directory} ({CONFIG_FILE} missing)")
    try:
        ledger = nonces.NonceLedger.open(directory / LEDGER_FILE)
    except (nonces.LedgerError, OSError) as exc:
        raise NodeStartError(f"cannot lock the node ({exc}); stop it first") from None
    try:
        try:
            store = SecretStore.open(directory / STORE_DIR, passphrase=passphrase, pin=pin)
        except StoreError as exc:
            raise NodeStartError(f"cannot open the node's key store: {exc}") from exc
        with store:
            yield store
    finally:
        ledger.close()


def update_approvers(
    directory: Path,
    *,
    add: Sequence[bytes] = (),
    remove: Sequence[bytes] = (),
    min_approvals: int | None = None,
    organisations_only: bool | None = None,
    passphrase: str | None = None,
    pin: str | None = None,
) -> tuple[NodeConfig, bool]:
    """Change the trusted approvers (and optionally ``min_approvals`` and ``organisations_only``) of a stopped node.

    The sealed copy in the store is the configuration that counts: the change is
    made to it, sealed, and then written to ``node.json`` (a ``node.json`` that
    differed is replaced, which is also how a change interrupted between the two
    writes is finished). Adding a trusted key or removing an absent one changes
    nothing. The node must be stopped: its nonce ledger's lock is taken for the
    duration. Returns the new configuration and whether ``node.json`` had differed
    from the sealed copy.
    """
    directory = Path(directory)
    if not (directory / CONFIG_FILE).exists():
        raise NodeStartError(f"no node in {directory} ({CONFIG_FILE} missing)")
    for key in [*add, *remove]:
        try:
            quorum.check_public_key(key)
        except quorum.EvidenceError as exc:
            raise NodeStartError(str(exc)) from None
    if set(add) & set(remove):
        raise NodeStartError("a key cannot be both added and removed")
    with stopped_node(directory, passphrase=passphrase, pin=pin) as store:
        sealed = store.get(CONFIG_OBJECT)
        config = NodeConfig.from_json(sealed.decode())
        approvers = [a for a in config.approvers if a not in set(remove)]
        approvers += [a for a in add if a not in approvers]
        floor = config.min_approvals if min_approvals is None else min_approvals
        try:
            check_approval_settings(approvers, floor, config.require_evidence)
        except ValueError as exc:
            raise NodeStartError(str(exc)) from None
        only = config.organisations_only if organisations_only is None else organisations_only
        new = replace(config, approvers=tuple(approvers), min_approvals=floor, organisations_only=only)
        text = (new.to_json() + "\n").encode()
        differed = (directory / CONFIG_FILE).read_bytes() != sealed
        if text != sealed:
            store.put(CONFIG_OBJECT, text)
        write_atomic(directory / CONFIG_FILE, text, mode=0o644, overwrite=True)
    return new, differed


ROTATION_FILE: Final = "rotation.json"
"""Where ``harbour node rotate-keys`` leaves the statement for the operator to carry to the others."""
_NEXT_IDENTITY: Final = "identity-next"


def rotate_identity(directory: Path, *, passphrase: str | None = None, pin: str | None = None) -> Rotation:
    """Give a stopped node a new identity; returns the statement the other nodes need (also in rotation.json).

    The node must have no admin session staged and no cold session open (finish or
    discard them first: their rosters name the old identity). Its own key rosters are
    updated to the new descriptor, the old private key is deleted, and
    ``descriptor.json`` is rewritten. The new key is kept aside first (``identity-next``),
    so a run interrupted half-way is finished by running it again.
    """
    directory = Path(directory)
    with stopped_node(directory, passphrase=passphrase, pin=pin) as store:
        config = NodeConfig.from_json(store.get(CONFIG_OBJECT).decode())
        busy = store.names("pending/") + store.names("sessions/")
        if busy:
            raise NodeStartError(
                f"the node has staged or open sessions ({', '.join(busy)}): finish or discard them first, "
                "their rosters name the current identity"
            )
        old = NodeIdentity.from_bytes(store.get("identity"))
        new = NodeIdentity.from_bytes(store.get(_NEXT_IDENTITY)) if store.exists(_NEXT_IDENTITY) else None
        written = (directory / DESCRIPTOR_FILE).read_text().strip()
        if new is None and written != old.descriptor(config.name, config.url).to_json():
            new = old  # swapped, but descriptor.json not yet rewritten: finish the statement on file
        if new is not None and new.node_id == old.node_id:
            # Interrupted after the swap: the statement written before it is the one to finish.
            rotation = Rotation.decode((directory / ROTATION_FILE).read_bytes())
            if rotation.new.node_id != new.node_id:
                raise NodeStartError(f"{ROTATION_FILE} does not name this node's new identity")
        else:
            if new is None:
                new = NodeIdentity.generate()
                store.put(_NEXT_IDENTITY, new.to_bytes())
            rotation = Rotation.make(old, new, config.name, config.url)
            write_atomic(directory / ROTATION_FILE, rotation.encode(), mode=0o644, overwrite=True)
        try:
            records = rotated_key_records(store, rotation)
        except RotationError as exc:
            raise NodeStartError(f"cannot rotate: {exc}") from exc
        for name, record in records.items():
            store.put(name, cbor2.dumps(record))
        store.put("identity", new.to_bytes())  # the old private key is gone from here on
        # Its own old identity is retired too, as on every other node.
        store.put(f"rotated/{rotation.old.node_id}", rotation_id(rotation.encode()))
        descriptor = new.descriptor(config.name, config.url)
        write_atomic(directory / DESCRIPTOR_FILE, (descriptor.to_json() + "\n").encode(), mode=0o644)
        store.delete(_NEXT_IDENTITY)  # last: until here, running again finishes this same rotation
    return rotation


def node_incidents(
    directory: Path, *, clear: str | None = None, passphrase: str | None = None, pin: str | None = None
) -> tuple[dict[str, int], bool]:
    """A stopped node's base-OT incident counts per peer (and whether ``clear``'s was reset)."""
    directory = Path(directory)
    with stopped_node(directory, passphrase=passphrase, pin=pin) as store:
        cleared = False
        if clear is not None:
            # The clear goes in the log too: the count is rebuilt from the log at start.
            with signlog.SignLog.open(directory / LOG_FILE) as sign_log:
                now = int(time.time())
                sign_log.append(
                    time=now,
                    kind="keygen",
                    session_id=hashlib.sha256(f"harbour/incidents/clear/{clear}/{now}".encode()).digest(),
                    key_id="",
                    path="m",
                    outcome="incident",
                    reason=compromise.cleared_reason(clear),
                )
            cleared = compromise.clear_incidents(store, clear)
        return compromise.incidents(store), cleared
