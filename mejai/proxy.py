"""The client's address behind reverse proxies: trusted proxies are configuration, never a header's say-so.

`TRUSTED_PROXIES` (settings / environment):

* empty (default) — no proxy is trusted: the peer address is the client; X-Forwarded-For is ignored;
* a number N — N proxies stand in front of the app (the nearest is the peer); the client is the
  N-th X-Forwarded-For hop from the right;
* comma-separated addresses or CIDRs — walking from the peer leftwards through X-Forwarded-For,
  every trusted hop is skipped; the first untrusted one is the client.

Every hop left of the client was written by the client and is never read, so random
X-Forwarded-For values cannot mint new addresses (the rate limits key on this address).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings


@dataclass(frozen=True)
class TrustedProxies:
    count: int = 0
    networks: tuple = ()

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


@lru_cache(maxsize=8)
def trusted_proxies_parse(value: str) -> TrustedProxies:
    """'' → none; '2' → two proxies; '10.0.0.0/8, 127.0.0.1' → those networks. ValueError on garbage."""
    value = (value or "").strip()
    if not value:
        return TrustedProxies()
    if value.isdigit():
        return TrustedProxies(count=int(value))
    networks = tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())
    return TrustedProxies(networks=networks)


def trusted_proxies() -> TrustedProxies:
    value = str(getattr(settings, "TRUSTED_PROXIES", "") or "")
    if not value and getattr(settings, "WIDGET_TRUST_X_FORWARDED_FOR", False):
        value = "1"  # the older widget setting meant exactly one proxy in front
    return trusted_proxies_parse(value)


def _hop(text: str) -> str:
    text = text.strip().strip('"')
    if text.startswith("[") and "]" in text:  # [v6]:port
        return text[1 : text.index("]")]
    if text.count(":") == 1:  # v4:port
        return text.split(":", 1)[0]
    return text


def client_address(*, peer: str, forwarded_for: str = "") -> str:
    """The client's address from the peer address and the X-Forwarded-For header, by TRUSTED_PROXIES."""
    proxies = trusted_proxies()
    peer = (peer or "unknown")[:64]
    if not proxies.count and not proxies.networks:
        return peer
    hops = [_hop(h) for h in (forwarded_for or "").split(",") if h.strip()][-32:]
    chain = [*hops, peer]
    if proxies.count:
        return (chain[-(proxies.count + 1)] if len(chain) > proxies.count else chain[0])[:64]
    for address in reversed(chain):
        if not proxies.trusts(address):
            return address[:64]
    return chain[0][:64]


def client_ip(meta: dict) -> str:
    """The client's address of a Django request (`request.META`)."""
    return client_address(peer=meta.get("REMOTE_ADDR") or "", forwarded_for=meta.get("HTTP_X_FORWARDED_FOR", ""))


def client_ip_of_request(request) -> str | None:
    """The client's address of a request (django-axes' AXES_CLIENT_IP_CALLABLE), DRF requests too;
    None when there is no address (a test client's force_login, a management command)."""
    address = client_ip(getattr(request, "META", {}) or {})
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def client_ip_of_scope(scope: dict) -> str:
    """The client's address of an ASGI connection (WebSocket consumers)."""
    client = scope.get("client") or ("unknown", 0)
    forwarded = b",".join(v for k, v in scope.get("headers") or () if k.lower() == b"x-forwarded-for")
    return client_address(peer=str(client[0]), forwarded_for=forwarded.decode("latin-1"))
