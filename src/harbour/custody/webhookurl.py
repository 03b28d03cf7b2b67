"""Which webhook URLs the service will call: http(s) only, and by default only public addresses.

An admin's webhook URL makes the service send requests on the admin's behalf, from
inside the operator's network. Without a check that is server-side request forgery:
``http://127.0.0.1:8700/...``, the cloud metadata address ``169.254.169.254`` or a
database on a private subnet would be reachable through a webhook. So a URL must
be ``http`` or ``https``, carry no credentials, and its host must resolve only to
global addresses, unless the operator allows private ones
(``webhook_allow_private`` in custody.json, for a receiver on the same host or
network). The check runs when the endpoint is registered and again before every
attempt, and the request goes to the address that was checked (:class:`Target`),
so a name that resolves elsewhere later (DNS rebinding) gains nothing.

An IPv6 address can lead to an IPv4 one: IPv4-mapped (``::ffff:a.b.c.d``), NAT64
(``64:ff9b::a.b.c.d``) and 6to4 (``2002:aabb:ccdd::``) addresses are judged by the
IPv4 address they embed, and the ranges whose embedding cannot be judged here
(IPv4-compatible ``::/96``, IPv4-translated ``::ffff:0:0:0/96``, local-use NAT64
``64:ff9b:1::/48`` and Teredo ``2001::/32``) are refused outright.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from harbour.custody.errors import Conflict, Invalid

MAX_URL: Final = 2048
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver)."""
    infos: list[Any] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True)
class Target:
    """A checked URL: what to connect to, and what to say the host is."""

    url: str
    scheme: str
    host: str
    port: int
    address: str
    """The checked address the request is sent to."""

    def request_url(self) -> str:
        """The URL with its host replaced by the checked address (the Host header and TLS name stay ``host``)."""
        parts = urllib.parse.urlsplit(self.url)
        literal = f"[{self.address}]" if ":" in self.address else self.address
        return urllib.parse.urlunsplit((parts.scheme, f"{literal}:{self.port}", parts.path or "/", parts.query, ""))

    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


REFUSED_V6: Final = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/96",  # IPv4-compatible (deprecated): ::a.b.c.d
        "::ffff:0:0:0/96",  # IPv4-translated: ::ffff:0:a.b.c.d
        "64:ff9b:1::/48",  # local-use NAT64, whose embedding depends on the site's prefix length
        "2001::/32",  # Teredo, which tunnels to an obfuscated IPv4 client
    )
)
"""IPv6 ranges that carry an IPv4 address to a translator or tunnel, refused outright."""
EMBEDDING_V6: Final = ipaddress.IPv6Network("64:ff9b::/96")
"""Well-known NAT64: the last 32 bits are the IPv4 address the translator connects to."""


def embedded(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to through mapping, NAT64 or 6to4, if it embeds one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in EMBEDDING_V6:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _private(address: IpAddress) -> bool:
    """Whether a request to ``address`` could reach anything but the public internet."""
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in network for network in REFUSED_V6):
            return True
        inner = embedded(address)
        if inner is not None:
            return _private(inner)
    return not address.is_global or address.is_multicast


def parse(url: object) -> urllib.parse.SplitResult:
    """The URL's parts, Invalid unless it is an absolute http(s) URL without credentials or fragment."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL:
        raise Invalid(f"the webhook URL must be text of 1..{MAX_URL} characters")
    if not url.isascii() or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise Invalid("the webhook URL must be ASCII without spaces or control characters (punycode a name)")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Invalid(f"the webhook URL must be http:// or https://, not {parts.scheme or 'relative'}")
    if parts.username is not None or parts.password is not None:
        raise Invalid("the webhook URL must not carry credentials (the delivery is signed instead)")
    if parts.fragment:
        raise Invalid("the webhook URL must not have a fragment")
    if not parts.hostname:
        raise Invalid("the webhook URL has no host")
    try:
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError:
        raise Invalid("the webhook URL's port is not a number in 1..65535") from None
    return parts


def check(url: object, *, allow_private: bool, resolver: Resolver = resolve) -> Target:
    """The URL as a :class:`Target`, Invalid if it may not be called (see the module's docstring)."""
    parts = parse(url)
    assert isinstance(url, str) and parts.hostname is not None
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = list(resolver(host, port))
    except (OSError, UnicodeError):
        raise Conflict(f"the webhook host {host!r} does not resolve") from None
    if not found:
        raise Conflict(f"the webhook host {host!r} does not resolve")
    addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in found]
    if not allow_private:
        for address in addresses:
            if _private(address):
                raise Conflict(
                    f"the webhook host {host!r} resolves to {address}, a loopback, private or reserved address; "
                    "the operator must allow private webhook addresses (webhook_allow_private) for that"
                )
    return Target(url=url, scheme=parts.scheme, host=host, port=port, address=str(addresses[0]))
