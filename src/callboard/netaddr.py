"""IP addresses as the access checks compare them: a peer's text parsed (brackets allowed),
an IPv4-mapped IPv6 address taken as the IPv4 it carries, membership of a list of networks."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def unmapped(address: IpAddress) -> IpAddress:
    """::ffff:10.0.0.1 is 10.0.0.1 (a dual-stack socket's view of an IPv4 peer)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_ip(text: str) -> IpAddress | None:
    try:
        return unmapped(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        return None


def in_any(address: IpAddress, networks: Iterable[IpNetwork]) -> bool:
    return any(address in network for network in networks)
