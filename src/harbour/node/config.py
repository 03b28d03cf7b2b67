"""A signer node's directory: its configuration file, and creating a new node.

``harbour node init`` calls :func:`init_node`, which makes the directory a
:class:`~harbour.node.service.NodeService` opens: the identity keys (generated
here, stored only encrypted in the node's secret store), ``node.json`` (where to
listen, which approval authorities to trust, the session timeout) and
``descriptor.json`` (the public descriptor other nodes and the coordinator are
given).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from harbour.node import approval
from harbour.node.identity import IdentityError, NodeDescriptor, NodeIdentity, check_name, check_url
from harbour.node.keyfile import write_atomic
from harbour.node.store import Pkcs11Config, SecretStore

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


class NodeStartError(RuntimeError):
    """The node cannot start: wrong passphrase or PIN, damaged files, bad configuration."""


@dataclass(frozen=True)
class NodeConfig:
    name: str
    url: str
    listen_host: str
    listen_port: int
    authorities: tuple[bytes, ...]
    session_timeout: int = DEFAULT_SESSION_TIMEOUT

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": CONFIG_FORMAT,
                "version": CONFIG_VERSION,
                "name": self.name,
                "url": self.url,
                "listen": f"{self.listen_host}:{self.listen_port}",
                "authorities": [a.hex() for a in self.authorities],
                "session_timeout": self.session_timeout,
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
        keys = {"format", "version", "name", "url", "listen", "authorities", "session_timeout"}
        if not isinstance(obj, dict) or set(obj) != keys or obj["format"] != CONFIG_FORMAT:
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
            return cls(check_name(obj["name"]), check_url(obj["url"]), host, port, authorities, timeout)
        except (ValueError, TypeError, IdentityError, approval.AuthorityKeyError) as exc:
            raise NodeStartError(f"{CONFIG_FILE}: {exc}") from exc


def parse_listen(listen: object) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``) -> (host, port)."""
    if not isinstance(listen, str) or ":" not in listen:
        raise ValueError(f"listen address must be HOST:PORT, got {listen!r}")
    host, _, port = listen.rpartition(":")
    if not port.isdigit() or not 1 <= int(port) <= 65535 or not host:
        raise ValueError(f"listen address must be HOST:PORT with a port 1..65535, got {listen!r}")
    check_url(f"http://{host}:{int(port)}")
    return host.strip("[]"), int(port)


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
) -> NodeDescriptor:
    """Create a node directory: identity (encrypted), configuration and public descriptor."""
    directory = Path(directory)
    if (directory / CONFIG_FILE).exists():
        raise NodeStartError(f"{directory} already holds a node ({CONFIG_FILE} exists)")
    if not authorities:
        raise NodeStartError("a node needs at least one approval authority's public key, or it can approve nothing")
    host, port = parse_listen(listen)
    shown = f"[{host}]" if ":" in host else host
    url = url or f"http://{shown}:{port}"
    if not 1 <= session_timeout <= 3600:
        raise NodeStartError("the session timeout is 1..3600 seconds")
    config = NodeConfig(check_name(name), check_url(url), host, port, tuple(authorities), session_timeout)
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
    finally:
        store.close()
    descriptor = identity.descriptor(config.name, config.url)

    write_atomic(directory / DESCRIPTOR_FILE, (descriptor.to_json() + "\n").encode(), mode=0o644, overwrite=False)
    write_atomic(directory / CONFIG_FILE, config_text.encode(), mode=0o644, overwrite=False)
    return descriptor
