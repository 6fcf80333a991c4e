"""The guarded POST (energypay/webhooks/transport.py): no SSRF, no redirects, bounded time and size, never raises."""

from __future__ import annotations

import socket
import time

import pytest

from energypay.webhooks import transport
from tests.energypay.webhooks.receiver import Receiver

BODY = b'{"type":"webhook.test"}'
HEADERS = {"Content-Type": "application/json"}


def post(url: str, *, allow_private: bool = True, allow_http: bool = True, timeout: float = 1) -> transport.Answer:
    return transport.post(
        url,
        BODY,
        HEADERS,
        connect_timeout=timeout,
        read_timeout=timeout,
        allow_private=allow_private,
        allow_http=allow_http,
    )


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",  # noqa: S104 (the address under test)
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a01:203::1",  # 6to4 of 10.1.2.3
        "ff02::1",
    ],
)
def test_private_loopback_link_local_and_embedded_addresses_are_forbidden(address):
    assert transport.forbidden(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:81b::200e"])
def test_public_unicast_addresses_are_allowed(address):
    assert not transport.forbidden(address)


def test_a_receiver_on_loopback_is_refused_without_the_setting_and_never_contacted():
    receiver = Receiver()
    try:
        answer = post(receiver.url, allow_private=False)
        named = post(f"http://localhost:{receiver.port}/hooks", allow_private=False)
    finally:
        receiver.close()

    assert answer.status is None and "127.0.0.1" in answer.error and answer.error.startswith("refused:")
    assert named.status is None and "private, loopback or link-local" in named.error
    assert receiver.requests == []


def test_a_name_with_one_private_address_among_public_ones_is_refused(monkeypatch):
    """Every address is checked: a resolver may hand out the private one next time."""
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 443)) for ip in ("93.184.216.34", "10.0.0.7")]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answers)

    answer = post("https://receiver.example/hooks", allow_private=False)

    assert answer.status is None and "10.0.0.7" in answer.error


def test_the_connection_goes_to_the_address_that_was_checked_with_the_host_name_kept(monkeypatch):
    """DNS rebinding: the name is resolved once, and that checked address is what the socket connects to."""
    receiver = Receiver()
    calls = []

    def resolve(host, port, *args, **kwargs):
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    try:
        answer = post(f"http://receiver.example:{receiver.port}/hooks?x=1")
    finally:
        receiver.close()

    assert answer.ok, answer.error
    assert calls == ["receiver.example"]  # once: nothing else (http.client) resolved it again
    [request] = receiver.requests
    assert request.headers["Host"] == f"receiver.example:{receiver.port}"
    assert request.path == "/hooks?x=1" and request.body == BODY


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://receiver.example/x", "must start with https://"),
        ("https://user:pw@receiver.example/x", "user name or password"),
        ("https:///nohost", "no host"),
        ("http://receiver.example/x", "plain http://"),
        ("https://receiver.example:99999/x", "not a valid URL"),
    ],
)
def test_urls_that_can_never_be_sent_to_are_refused_with_the_reason(url, why):
    answer = post(url, allow_private=False, allow_http=False)

    assert answer.status is None and why in answer.error


def test_a_name_that_does_not_resolve_is_a_failed_attempt_not_an_exception():
    answer = post("https://no-such-host.invalid/hooks", allow_private=False)

    assert answer.status is None and "does not resolve" in answer.error


def test_a_resolver_that_hangs_costs_the_connect_timeout(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: time.sleep(3))
    started = time.monotonic()

    answer = post("https://slow-dns.example/hooks", timeout=0.5)

    assert time.monotonic() - started < 1.5
    assert "took longer than 0.5 s" in answer.error


def test_a_receiver_that_hangs_costs_the_timeout_and_no_more():
    receiver = Receiver()
    receiver.behaviour = "hang"
    started = time.monotonic()
    try:
        answer = post(receiver.url, timeout=0.5)
    finally:
        receiver.close()

    elapsed = time.monotonic() - started
    assert elapsed < 1.5, elapsed  # connect + read deadline (1 s) and a little
    assert answer.status is None and "timed out" in answer.error


def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_deadline():
    """A byte every 0.2 s keeps every single read under its timeout; the deadline ends it anyway."""
    receiver = Receiver()
    receiver.behaviour = "drip"
    started = time.monotonic()
    try:
        answer = post(receiver.url, timeout=0.5)
    finally:
        receiver.close()

    assert time.monotonic() - started < 1.6
    assert answer.status == 200  # the status line came in time; the excerpt is what arrived before the cut


def test_a_redirect_is_not_followed():
    target, receiver = Receiver(), Receiver()
    receiver.behaviour, receiver.redirect_to = "redirect", target.url
    try:
        answer = post(receiver.url)
    finally:
        receiver.close()
        target.close()

    assert answer.status == 302 and not answer.ok
    assert answer.error == f"redirect to {target.url} not followed"
    assert target.requests == []


def test_a_huge_answer_is_read_only_as_far_as_the_log_needs():
    receiver = Receiver()
    receiver.behaviour = "big"
    try:
        answer = post(receiver.url)
    finally:
        receiver.close()

    assert answer.ok
    assert len(answer.body) == transport.READ_BYTES


def test_a_body_over_the_limit_is_not_sent():
    receiver = Receiver()
    try:
        answer = transport.post(
            receiver.url,
            b"x" * (transport.MAX_BODY_BYTES + 1),
            HEADERS,
            connect_timeout=1,
            read_timeout=1,
            allow_private=True,
            allow_http=True,
        )
    finally:
        receiver.close()

    assert answer.status is None and "over the limit" in answer.error
    assert receiver.requests == []


def test_a_closed_port_is_a_failed_attempt():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now

    answer = post(f"http://127.0.0.1:{port}/hooks")

    assert answer.status is None and "connection refused" in answer.error


def test_tls_is_checked_against_the_host_name(monkeypatch):
    """A plain-HTTP server behind an https:// URL fails the TLS handshake; the error says TLS, nothing is sent twice."""
    receiver = Receiver()
    try:
        answer = post(f"https://127.0.0.1:{receiver.port}/hooks")
    finally:
        receiver.close()

    assert answer.status is None and answer.error.startswith("TLS")
