"""Server-side request forgery guard for upstream base URLs that users configure.

``check_base_url(url, allow_private=...)`` accepts an ``http``/``https`` URL
without credentials whose host resolves only to public addresses. It raises
``InvalidRequest`` (code ``unsafe_base_url``) naming the first refused
address and why:

    metadata      169.254.169.254, fd00:ec2::254 (cloud instance metadata)   always refused
    loopback      127.0.0.0/8, ::1                                            refused unless allowed
    link-local    169.254.0.0/16, fe80::/10                                   refused unless allowed
    private       10/8, 172.16/12, 192.168/16, fc00::/7, and anything else
                  not globally routable (CGNAT, documentation, reserved)      refused unless allowed
    unspecified   0.0.0.0, ::                                                 refused unless allowed
    multicast     224.0.0.0/4, ff00::/8                                       refused unless allowed

Every resolved address is checked (a name with one public and one private
address is refused), and IPv4-mapped IPv6 addresses are judged as the IPv4
address they carry. ``allow_private`` is the operator's flag for a trusted
network (the dev stack's fake provider on loopback); metadata addresses stay
refused even then. A check at save time does not stop a name from resolving
elsewhere later (DNS rebinding), so callers that connect should check again
at request time.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from .errors import InvalidRequest

__all__ = ["METADATA_ADDRESSES", "Resolver", "address_refusal", "check_base_url"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``host, port -> addresses``; the default asks the system resolver.
Resolver = Callable[[str, int], list[str]]

METADATA_ADDRESSES: Final = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_SCHEMES: Final = {"http": 80, "https": 443}


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def address_refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why ``address`` may not be an upstream (see the module table), or ``None`` if it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if allow_private:
        return None
    for reason, hit in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("private", not address.is_global),
    ):
        if hit:
            return f"a {reason} address"
    return None


def _refuse(url: str, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"base_url {url!r} is not allowed: {why}.", param="base_url", code="unsafe_base_url"
    )


def _addresses(url: str, host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass  # a name, not an address literal: resolve it
    try:
        resolved = resolver(host, port)
    except OSError:
        raise _refuse(url, f"the host {host!r} does not resolve") from None
    if not resolved:
        raise _refuse(url, f"the host {host!r} does not resolve")
    # Scoped IPv6 results ("fe80::1%eth0") carry a zone the parser does not take.
    return [ipaddress.ip_address(address.split("%", 1)[0]) for address in resolved]


def check_base_url(url: str, *, allow_private: bool, resolver: Resolver | None = None) -> None:
    """Accept ``url`` as an upstream base URL or raise ``InvalidRequest`` saying why not.

    Blocking (it may resolve a name): call it from a thread in async code.
    """
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise _refuse(url, "it must be an http or https URL with a host")
    if parts.username is not None or parts.password is not None:
        raise _refuse(url, "credentials in the URL are not accepted")
    try:
        port = parts.port or _SCHEMES[parts.scheme]
    except ValueError:
        raise _refuse(url, "the port is invalid") from None
    host = parts.hostname
    for address in _addresses(url, host, port, resolver or _system_resolver):
        why = address_refusal(address, allow_private=allow_private)
        if why is not None:
            raise _refuse(url, f"{host} resolves to {address}, {why}")
