"""Issue 10 (Low): callbacks go only to public addresses, pinned for the request; errors are no port oracle."""

from __future__ import annotations

import socket

import httpx
import pytest

from kakao.clients import callback
from kakao.clients.callback import Outcome, callback_post

URL = "https://bot-api.kakao.com/v1/bots/5ae9b76d7409b11ec845b746/callback/token-1"


def _resolving_to(monkeypatch, *addresses):
    def getaddrinfo(host, port, *args, **kwargs):
        family = {4: socket.AF_INET, 6: socket.AF_INET6}
        return [(family[6 if ":" in a else 4], socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr(callback.socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def recorded(monkeypatch):
    """The HTTP client, answering SUCCESS without a network, recording what it was asked."""
    requests = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"status": "SUCCESS", "taskId": "t-1"})

    client = httpx.Client(transport=httpx.MockTransport(handler), follow_redirects=False)
    monkeypatch.setattr(callback, "_http_client", lambda: client)
    return requests


@pytest.mark.parametrize("address", ["10.0.0.5", "127.0.0.1", "169.254.169.254", "192.168.1.1", "172.16.0.1",
                                     "100.64.0.1", "0.0.0.0", "::1", "fc00::1", "fe80::1", "224.0.0.1"])
def test_non_public_addresses_are_refused_before_connecting(monkeypatch, recorded, address):
    _resolving_to(monkeypatch, address)
    result = callback_post(url=URL, body={"version": "2.0"})
    assert result.outcome == Outcome.FINAL and result.error_code == "callback_address_refused"
    assert result.nothing_sent and recorded == []


def test_one_private_address_among_public_ones_is_refused(monkeypatch, recorded):
    _resolving_to(monkeypatch, "203.0.113.10", "10.0.0.5")
    result = callback_post(url=URL, body={})
    assert result.error_code == "callback_address_refused" and recorded == []


def test_the_request_goes_to_the_checked_address(monkeypatch, recorded):
    _resolving_to(monkeypatch, "2001:4860:4860::8888", "8.8.8.8")
    result = callback_post(url=URL, body={"version": "2.0"})
    assert result.outcome == Outcome.DELIVERED
    sent = recorded[0]
    assert sent.url.host == "8.8.8.8" and sent.url.path.endswith("/callback/token-1")
    assert sent.headers["host"] == "bot-api.kakao.com"
    assert sent.extensions["sni_hostname"] == "bot-api.kakao.com"  # TLS verified for the name, not the address


def test_error_texts_are_no_port_oracle(monkeypatch):
    _resolving_to(monkeypatch, "8.8.8.8")

    def refuse(request):
        raise httpx.ConnectError("[Errno 111] Connection refused (10.0.0.7:6379)")

    monkeypatch.setattr(callback, "_http_client", lambda: httpx.Client(transport=httpx.MockTransport(refuse)))
    result = callback_post(url=URL, body={})
    assert result.error_code == "connect_error" and "6379" not in result.error and "Errno" not in result.error

    def unresolvable(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(callback.socket, "getaddrinfo", unresolvable)
    result = callback_post(url=URL, body={})
    assert result.error_code == "connect_error" and result.nothing_sent and "Name or service" not in result.error
