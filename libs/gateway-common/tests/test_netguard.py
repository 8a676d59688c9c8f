"""check_base_url: public upstreams pass; metadata, loopback, link-local, private, ... do not."""

from __future__ import annotations

import pytest

from gateway_common.errors import InvalidRequest
from gateway_common.netguard import check_base_url


def _resolver(*addresses: str):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


def _fail(host: str, port: int) -> list[str]:
    raise OSError("no such host")


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.215.14/v1",
        "http://8.8.8.8:8080/v1",
        "https://[2606:4700:4700::1111]/v1",
    ],
)
def test_public_addresses_pass(url: str) -> None:
    check_base_url(url, allow_private=False)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://127.0.0.1:8090/v1", "loopback"),
        ("http://[::1]/v1", "loopback"),
        ("http://[::ffff:127.0.0.1]/v1", "loopback"),
        ("http://169.254.10.1/v1", "link-local"),
        ("http://[fe80::1]/v1", "link-local"),
        ("http://10.1.2.3/v1", "private"),
        ("http://172.16.0.1/v1", "private"),
        ("http://172.31.255.255/v1", "private"),
        ("http://192.168.1.1/v1", "private"),
        ("http://[fc00::1]/v1", "private"),
        ("http://100.64.0.1/v1", "private"),
        ("http://0.0.0.0/v1", "unspecified"),
        ("http://[::]/v1", "unspecified"),
        ("http://224.0.0.1/v1", "multicast"),
        ("http://[ff02::1]/v1", "multicast"),
    ],
)
def test_refused_addresses(url: str, why: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_base_url(url, allow_private=False)
    assert info.value.code == "unsafe_base_url" and info.value.param == "base_url"
    assert why in info.value.message


def test_operator_flag_allows_private_but_never_metadata() -> None:
    check_base_url("http://127.0.0.1:8090/v1", allow_private=True)
    check_base_url("http://10.0.0.5/v1", allow_private=True)
    check_base_url("http://[fe80::1]/v1", allow_private=True)
    for url in (
        "http://169.254.169.254/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
    ):
        with pytest.raises(InvalidRequest, match="metadata"):
            check_base_url(url, allow_private=True)


def test_every_resolved_address_is_checked() -> None:
    check_base_url("https://api.example.com/v1", allow_private=False, resolver=_resolver("1.1.1.1"))
    with pytest.raises(InvalidRequest, match=r"api\.example\.com resolves to 10\.0\.0\.1"):
        check_base_url(
            "https://api.example.com/v1",
            allow_private=False,
            resolver=_resolver("1.1.1.1", "10.0.0.1"),
        )
    with pytest.raises(InvalidRequest, match="link-local"):
        check_base_url("http://x.test/", allow_private=False, resolver=_resolver("fe80::1%eth0"))


def test_localhost_resolves_to_loopback() -> None:
    with pytest.raises(InvalidRequest, match="loopback"):
        check_base_url("http://localhost:8090/v1", allow_private=False)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://1.1.1.1/", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("https:///v1", "http or https"),
        ("https://user:pw@1.1.1.1/", "credentials"),
        ("https://1.1.1.1:99999/", "port"),
    ],
)
def test_malformed_urls(url: str, why: str) -> None:
    with pytest.raises(InvalidRequest, match=why):
        check_base_url(url, allow_private=False)


def test_unresolvable_host() -> None:
    with pytest.raises(InvalidRequest, match="does not resolve"):
        check_base_url("https://nowhere.invalid/", allow_private=False, resolver=_fail)
