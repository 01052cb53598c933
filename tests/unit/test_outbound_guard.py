"""The outbound policy: metadata and link-local addresses always refused, private ranges on
request, names checked on every address they resolve to, and httpx requests refused before
any connection is made."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from callboard.outbound_guard import (
    FetchPolicy,
    FetchRefused,
    GuardedTransport,
    checked_address,
    policy,
    set_policy,
)


@pytest.fixture(autouse=True)
def _restore_policy() -> object:
    before = policy()
    yield
    set_policy(before)


def test_metadata_and_link_local_are_always_refused() -> None:
    open_policy = FetchPolicy()
    for address in ("169.254.169.254", "fe80::1", "fd00:ec2::254", "100.100.100.200",
                    "0.0.0.0", "224.0.0.1", "::ffff:169.254.169.254"):  # fmt: skip
        assert open_policy.refusal(ipaddress.ip_address(address)), address
    for address in ("127.0.0.1", "10.1.2.3", "192.0.2.10", "2001:db8::1"):
        assert open_policy.refusal(ipaddress.ip_address(address)) is None, address


def test_private_ranges_are_refused_when_asked() -> None:
    strict = FetchPolicy(deny_private=True)
    for address in ("127.0.0.1", "10.1.2.3", "172.20.0.1", "192.168.1.1", "100.64.0.1",
                    "::1", "fd12::1", "::ffff:10.0.0.1"):  # fmt: skip
        assert strict.refusal(ipaddress.ip_address(address)), address
    assert strict.refusal(ipaddress.ip_address("198.51.100.7")) is None


async def test_names_are_resolved_and_every_address_checked() -> None:
    set_policy(FetchPolicy(deny_private=True))
    with pytest.raises(FetchRefused, match="private"):
        await checked_address("localhost", 80)
    with pytest.raises(FetchRefused, match="cannot resolve"):
        await checked_address("no-such-host.invalid", 80)
    set_policy(FetchPolicy())
    assert await checked_address("localhost", 80) in ("127.0.0.1", "::1")


async def test_httpx_requests_to_refused_hosts_never_connect() -> None:
    async with httpx.AsyncClient(transport=GuardedTransport()) as client:
        with pytest.raises(httpx.ConnectError, match="link-local, metadata"):
            await client.get("http://169.254.169.254/latest/meta-data/")
    set_policy(FetchPolicy(deny_private=True))
    async with httpx.AsyncClient(transport=GuardedTransport()) as client:
        with pytest.raises(httpx.ConnectError, match="FETCH_DENY_PRIVATE"):
            await client.get("http://127.0.0.1:9/")
