"""The access policy on its own: addresses, proxies, keys, the paths that stay open."""

from __future__ import annotations

import ipaddress

from callboard.api.access import AccessPolicy, bearer


def _policy(**kwargs: object) -> AccessPolicy:
    return AccessPolicy(**kwargs)  # type: ignore[arg-type]


def test_without_settings_everything_is_open() -> None:
    policy = _policy()
    assert not policy.active
    assert policy.check(path="/v1/legs", peer="203.0.113.9", headers={}, query_token=None) is None


def test_keys_are_required_except_on_health_console_and_public_metrics() -> None:
    policy = _policy(api_keys=("k1", "second-key"))
    deny = policy.check(path="/v1/legs", peer="127.0.0.1", headers={}, query_token=None)
    assert deny is not None and deny.status == 401
    for header in ("Bearer k1", "bearer second-key"):
        headers = {"authorization": header}
        assert policy.check(path="/v1/legs", peer="::1", headers=headers, query_token=None) is None
    for wrong in ("Bearer k", "Bearer k1x", "Basic k1", "Bearer ", "k1"):
        headers = {"authorization": wrong}
        assert policy.check(path="/v1/legs", peer="::1", headers=headers, query_token=None)
    assert policy.check(path="/v1/vsi", peer="::1", headers={}, query_token="k1") is None
    for open_path in ("/v1/health", "/console", "/console/console.js"):
        assert policy.check(path=open_path, peer="::1", headers={}, query_token=None) is None
    assert policy.check(path="/consoles", peer="::1", headers={}, query_token=None)
    assert policy.check(path="/metrics", peer="::1", headers={}, query_token=None)
    public = _policy(api_keys=("k1",), metrics_public=True)
    assert public.check(path="/metrics", peer="::1", headers={}, query_token=None) is None


def test_allowed_ips_match_v4_v6_and_mapped_addresses() -> None:
    nets = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")]
    policy = _policy(allowed=nets)
    for peer in ("10.1.2.3", "2001:db8::7", "::ffff:10.9.9.9"):
        assert policy.check(path="/v1/health", peer=peer, headers={}, query_token=None) is None
    for peer in ("127.0.0.1", "2001:db9::1", None, "not-an-ip"):
        deny = policy.check(path="/v1/health", peer=peer, headers={}, query_token=None)
        assert deny is not None and deny.status == 403


def test_forwarded_for_counts_only_when_proxies_are_trusted() -> None:
    nets = [ipaddress.ip_network("10.0.0.0/8")]
    spoofed = {"x-forwarded-for": "10.0.0.5, 127.0.0.1"}
    untrusting = _policy(allowed=nets)
    assert untrusting.check(path="/v1/legs", peer="127.0.0.1", headers=spoofed, query_token=None)
    trusting = _policy(allowed=nets, trust_proxy_headers=True)
    assert (
        trusting.check(path="/v1/legs", peer="127.0.0.1", headers=spoofed, query_token=None) is None
    )
    junk = {"x-forwarded-for": "garbage"}
    assert trusting.check(path="/v1/legs", peer="10.0.0.1", headers=junk, query_token=None)


def test_bearer_reads_only_the_bearer_scheme() -> None:
    assert bearer({"authorization": "Bearer abc"}) == "abc"
    assert bearer({"authorization": "Basic abc"}) is None
    assert bearer({}) is None
