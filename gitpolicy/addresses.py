"""Which hosts a repository may live at: names and IP addresses, in every spelling a resolver
reads.

The address tables are written out here instead of taken from `ipaddress`'s `is_global` and
`is_private`, whose answers changed between Python releases: the server and the agents may run
different ones and must still agree.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import socket
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class HostPolicy:
    """What the operator allows beyond public hosts: loopback and private networks, or not."""

    allow_private_hosts: bool


class Category(enum.IntEnum):
    """How far an address is from a public repository host; the worst one found decides."""

    PUBLIC = 0
    PRIVATE = 1  # loopback, private and other non-public networks: the operator may allow them
    UNUSABLE = 2  # no repository can live there (multicast, unspecified, reserved)
    NEVER = 3  # link-local and cloud metadata: refused whatever the operator allows


PRIVATE_REFUSED = (
    "Loopback, private-network and other non-public hosts are not allowed on this server."
)
_REASONS = {
    Category.NEVER: "Link-local and cloud-metadata addresses are never allowed.",
    Category.UNUSABLE: "That address cannot hold a repository.",
    Category.PRIVATE: PRIVATE_REFUSED,
}

METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.azure.internal",
        "instance-data",
        "instance-data.ec2.internal",
    }
)


def _networks(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# AWS, GCP, Azure and most others answer on 169.254.169.254 (inside link-local); AWS also on
# fd00:ec2::254 and Alibaba Cloud on 100.100.100.200.
_NEVER = _networks("169.254.0.0/16", "100.100.100.200/32", "fe80::/10", "fd00:ec2::254/128")
_UNUSABLE_V4 = _networks(
    "0.0.0.0/8",  # "this network": Linux connects 0.0.0.0 to loopback
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the broadcast address
)
_PRIVATE_V4 = _networks(
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",  # carrier-grade NAT
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation
    "198.51.100.0/24",
    "203.0.113.0/24",
    "198.18.0.0/15",  # benchmarking
    "192.88.99.0/24",  # 6to4 relay anycast
)
_PRIVATE_V6 = _networks(
    "::1/128",
    "fc00::/7",  # unique local
    "fec0::/10",  # site-local (deprecated, still routed by some networks)
    "2001::/23",  # IETF protocol assignments: Teredo, benchmarking, ORCHID
    "2001:db8::/32",  # documentation
    "64:ff9b:1::/48",  # local-use NAT64, whose embedding of IPv4 is not fixed
)
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_NUMERIC_HOST = re.compile(r"^[0-9A-Fa-fXx.]+$")


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses traffic to `address` reaches: IPv4-mapped and -compatible, NAT64
    (64:ff9b::/96), 6to4 (2002::/16) and Teredo (its server and its client)."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    embedded = []
    if address.sixtofour is not None:
        embedded.append(address.sixtofour)
    if address.teredo is not None:
        embedded.extend(address.teredo)
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return embedded


def _own_category(address: IPAddress) -> Category:
    """The category of the address itself, not of what it embeds."""
    if any(address in net for net in _NEVER if net.version == address.version):
        return Category.NEVER
    if isinstance(address, ipaddress.IPv4Address):
        if any(address in net for net in _UNUSABLE_V4):
            return Category.UNUSABLE
        if any(address in net for net in _PRIVATE_V4):
            return Category.PRIVATE
        return Category.PUBLIC
    if any(address in net for net in _PRIVATE_V6):
        return Category.PRIVATE
    if address in _NAT64:
        return Category.PUBLIC  # the IPv4 address it embeds decides
    if address.is_multicast or address not in _GLOBAL_UNICAST_V6:
        # Outside 2000::/3 and the networks above: unspecified, IPv4-compatible, reserved.
        return Category.UNUSABLE
    return Category.PUBLIC


def categorize(address: IPAddress) -> Category:
    """The worst category among the address and every IPv4 address it embeds."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = embedded_ipv4(address)
        if address.ipv4_mapped is not None:
            return _own_category(embedded[0])
        return max([_own_category(address), *(_own_category(inner) for inner in embedded)])
    return _own_category(address)


def check_address(address: IPAddress, policy: HostPolicy) -> None:
    """Raise ValueError unless a repository may be fetched from `address` under `policy`."""
    category = categorize(address)
    if category is Category.PUBLIC:
        return
    if category is Category.PRIVATE and policy.allow_private_hosts:
        return
    raise ValueError(_REASONS[category])


def check_host(host: str, policy: HostPolicy) -> None:
    """Raise ValueError unless `host` (a DNS name, a dotted quad or a bracketed IPv6 address)
    may hold a repository under `policy`. Names are judged by their spelling only."""
    if not host:
        raise ValueError("The URL has no host.")
    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1]
        if "%" in inner:
            raise ValueError("The host may not carry an IPv6 zone id.")
        if re.fullmatch(r"[0-9.]+", inner):
            raise ValueError("An IPv4 address cannot be in brackets.")
        try:
            address = ipaddress.IPv6Address(inner)
        except ValueError as exc:
            raise ValueError("The host is not a valid IPv6 address.") from exc
        check_address(address, policy)
        return
    if not host.isascii() or not _HOSTNAME.fullmatch(host):
        raise ValueError("The host must be an ASCII DNS name or an IP address.")
    lowered = host.lower().rstrip(".")
    if lowered in METADATA_HOSTS:
        raise ValueError("Cloud-metadata hosts are never allowed.")
    if lowered == "localhost" or lowered.endswith(".localhost"):
        if not policy.allow_private_hosts:
            raise ValueError(PRIVATE_REFUSED)
        return
    if _NUMERIC_HOST.fullmatch(lowered):
        # Resolvers read 2130706433, 0x7f.1 and 127.1 as addresses: only the dotted quad passes.
        try:
            packed = socket.inet_aton(lowered)
        except OSError:
            if lowered.replace(".", "").isdigit():
                raise ValueError("The host is not a valid IPv4 address.") from None
            return  # a hex-looking DNS name such as 'cafe.be'
        address = ipaddress.IPv4Address(packed)
        if str(address) != lowered:
            raise ValueError("Write IPv4 addresses as four decimal numbers (a.b.c.d).")
        check_address(address, policy)


def check_resolved_host(host: str, port: int | None, policy: HostPolicy) -> None:
    """Resolve `host` and apply the address rules to every address it resolves to; a name that
    does not resolve passes (git will fail to reach it anyway).

    This narrows DNS tricks (a public name pointing at 127.0.0.1) but cannot close them: git
    resolves again when it connects.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        try:
            check_address(address, policy)
        except ValueError as exc:
            raise ValueError(f"{host} resolves to {address}. {exc}") from None
