"""Mutual TLS between the coordinator and the signer nodes: three files, and the contexts made from them.

What a node and the coordinator say to each other is sealed end to end
(:mod:`harbour.node.sealed`), so TLS is not what keeps a share or a signature
safe. It adds two things a deployment on several machines wants: who may open a
connection to a node at all (only a client whose certificate chains to the CA the
node's operator named), and privacy of the metadata (which key, which session,
when, how much).

Each side names three PEM files: its own certificate (chain), the certificate's
private key, and the CA it accepts the other side from. A node keeps them in
``node.json`` under ``tls`` (sealed in its store like every other setting, so
editing the file to drop client certificates stops the node from starting);
the custody service in ``custody.json`` under ``node_tls``; ``harbour cluster``
takes them as options. The paths are absolute and the files are read when the
context is made, so renewed certificates take effect at the next start.

The private key file must be readable by its owner only: a key others on the
machine can read is refused, not served.
"""

from __future__ import annotations

import os
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

FIELDS: Final = ("cert", "key", "ca")
CLIENT_ENV: Final = ("HARBOUR_CLUSTER_TLS_CERT", "HARBOUR_CLUSTER_TLS_KEY", "HARBOUR_CLUSTER_TLS_CA")
"""Where the commands that reach nodes directly (``harbour cluster``, ``harbour governance push``) find the
coordinator's client certificate, its key and the nodes' CA when no option names them."""


class TlsError(ValueError):
    """The TLS files are missing, unreadable, too widely readable or do not load."""


@dataclass(frozen=True)
class TlsFiles:
    """A certificate, its private key, and the CA that certifies the other side."""

    cert: Path
    key: Path
    ca: Path

    @classmethod
    def from_options(cls, cert: Path | None, key: Path | None, ca: Path | None) -> TlsFiles | None:
        """The three paths made absolute, None when none is given; TlsError when only some are."""
        given = [p for p in (cert, key, ca) if p is not None]
        if not given:
            return None
        if cert is None or key is None or ca is None:
            raise TlsError("mutual TLS needs all three files: the certificate, its private key and the CA")
        return cls(cert.absolute(), key.absolute(), ca.absolute())

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TlsFiles | None:
        """The client files :data:`CLIENT_ENV` names, None when it names none."""
        cert, key, ca = (Path(environ[n]) if environ.get(n) else None for n in CLIENT_ENV)
        return cls.from_options(cert, key, ca)

    @classmethod
    def from_json(cls, obj: object) -> TlsFiles:
        """``{"cert": ABS, "key": ABS, "ca": ABS}`` as written by :meth:`to_json`."""
        if not isinstance(obj, dict) or set(obj) != set(FIELDS):
            raise TlsError(f"tls must be an object with exactly {', '.join(FIELDS)} (absolute paths)")
        paths = []
        for name in FIELDS:
            value = obj[name]
            if not isinstance(value, str) or not Path(value).is_absolute():
                raise TlsError(f"tls.{name} must be an absolute path, got {value!r}")
            paths.append(Path(value))
        return cls(*paths)

    def to_json(self) -> dict[str, str]:
        return {"cert": str(self.cert), "key": str(self.key), "ca": str(self.ca)}

    def check(self) -> None:
        """TlsError unless the three files exist and the key file is its owner's alone."""
        for name, path in zip(FIELDS, (self.cert, self.key, self.ca), strict=True):
            if not path.is_file():
                raise TlsError(f"tls.{name}: no such file {path}")
        mode = os.stat(self.key).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TlsError(
                f"tls.key: {self.key} can be read by others (mode {stat.S_IMODE(mode):o}); chmod 600 it first"
            )

    def server_context(self) -> ssl.SSLContext:
        """What a node serves with: its certificate, and a client certificate from ``ca`` required."""
        context = self._context(ssl.Purpose.CLIENT_AUTH)
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self) -> ssl.SSLContext:
        """What the coordinator connects with: its certificate, and the node's verified against ``ca`` and its URL."""
        context = self._context(ssl.Purpose.SERVER_AUTH)
        context.check_hostname = True
        return context

    def uvicorn_options(self) -> dict[str, Any]:
        """The same server settings as uvicorn's options (it builds its own context from them)."""
        self.server_context()  # fail here, with our words, rather than inside uvicorn
        return {
            "ssl_certfile": str(self.cert),
            "ssl_keyfile": str(self.key),
            "ssl_ca_certs": str(self.ca),
            "ssl_cert_reqs": ssl.CERT_REQUIRED,
        }

    def _context(self, purpose: ssl.Purpose) -> ssl.SSLContext:
        self.check()
        try:
            context = ssl.create_default_context(purpose, cafile=str(self.ca))
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"tls.ca: {self.ca} is not a PEM CA certificate: {exc}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"tls.cert and tls.key: {self.cert} and {self.key} do not load as a pair: {exc}") from None
        return context
