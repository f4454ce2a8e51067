"""Allowed domains and paths: pattern parsing, origin matching (wildcard edge cases), frame-ancestors."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ValidationError

from mejai.errors import ApiError
from widgets.models import ChatWidget
from widgets.services import (
    allowed_domains_clean,
    allowed_paths_clean,
    origin_allowed,
    origin_parse,
    path_allowed,
    patterns_parse,
    widget_frame_ancestors,
    widget_origin_check,
)


def allowed(origin: str, *patterns: str) -> bool:
    parsed = origin_parse(origin)
    return parsed is not None and origin_allowed(origin=parsed, patterns=patterns_parse(patterns))


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("https://a.example.com", True),
        ("https://a.b.example.com", True),
        ("http://shop.example.com:8080", True),
        ("https://example.com", False),  # the wildcard is for subdomains only
        ("https://evil-example.com", False),
        ("https://evilexample.com", False),
        ("https://example.com.evil.com", False),
        ("https://a.example.com.evil.com", False),
        ("https://xexample.com", False),
        ("ftp://a.example.com", False),
        ("null", False),
    ],
)
def test_wildcard_matches_subdomains_at_a_label_boundary(origin, expected):
    assert allowed(origin, "*.example.com") is expected


def test_exact_host_any_port_and_case_and_trailing_dot():
    assert allowed("https://example.com", "example.com")
    assert allowed("http://example.com:3000", "example.com")
    assert allowed("https://EXAMPLE.com.", "example.com")
    assert not allowed("https://www.example.com", "example.com")
    assert not allowed("https://example.com.evil.com", "example.com")
    assert not allowed("https://evil-example.com", "example.com")


def test_port_and_scheme_restrictions():
    assert allowed("http://localhost:8000", "localhost:8000")
    assert not allowed("http://localhost:8001", "localhost:8000")
    assert allowed("http://localhost:5173", "localhost:*")
    assert allowed("https://example.com", "https://example.com")
    assert not allowed("http://example.com", "https://example.com")
    assert allowed("https://example.com:443", "https://example.com:443")


def test_idn_hosts_are_compared_as_punycode():
    assert allowed("https://xn--vv4b11d.kr", "예시.kr")
    assert allowed("https://shop.xn--vv4b11d.kr", "*.예시.kr")


@pytest.mark.parametrize(
    "bad",
    ["*", "*.com", "exa*mple.com", "example.com/path", "user@example.com", "ftp://example.com", "bad domain",
     "example.com:99999", "-bad.com", "a..b"],
)
def test_invalid_patterns_are_refused(bad):
    with pytest.raises(ValidationError):
        allowed_domains_clean([bad])


def test_patterns_are_normalized_and_deduplicated():
    assert allowed_domains_clean([" Example.COM ", "example.com", "*.Shop.example.com", "", "localhost:*"]) == [
        "example.com", "*.shop.example.com", "localhost",
    ]
    assert allowed_paths_clean(["/shop", "/shop", " /help/ "]) == ["/shop", "/help/"]
    with pytest.raises(ValidationError):
        allowed_paths_clean(["shop"])


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/shop", True), ("/shop/", True), ("/shop/cart", True), ("/shopping", False), ("/", False),
     ("/shop/../admin", False), ("/%73hop/x", True), ("/admin/../shop/a", True), ("//shop", True)],
)
def test_path_prefixes_match_at_segment_boundaries(path, expected):
    assert path_allowed(path=path, prefixes=["/shop"]) is expected


def test_no_path_prefixes_allow_every_path():
    assert path_allowed(path="/anything", prefixes=[])


def test_frame_ancestors_built_from_allowed_domains_only():
    widget = ChatWidget(allowed_domains=["example.com", "*.shop.test", "localhost:8000", "https://secure.test",
                                         "evil; script-src *"])
    value = widget_frame_ancestors(widget)
    assert value == (
        "frame-ancestors 'self' https://example.com:* http://example.com:* https://*.shop.test:* "
        "http://*.shop.test:* https://localhost:8000 http://localhost:8000 https://secure.test:*"
    )
    assert ";" not in value
    assert widget_frame_ancestors(ChatWidget(allowed_domains=[])) == "frame-ancestors 'self'"


def check(widget, origin=None, referer=None, page_url=None, own=()):
    return widget_origin_check(widget=widget, origin_header=origin, referer_header=referer, page_url=page_url,
                               own_origins=own)


def test_origin_check_uses_origin_then_referer_and_page_path():
    widget = ChatWidget(allowed_domains=["example.com"], allowed_paths=["/help"])
    result = check(widget, origin="https://example.com", page_url="https://example.com/help/faq")
    assert result.origin == "https://example.com" and not result.preview
    assert check(widget, referer="https://example.com/help/x").origin == "https://example.com"
    with pytest.raises(ApiError) as exc:
        check(widget, origin="https://example.com", page_url="https://example.com/admin")
    assert exc.value.code == "path_not_allowed" and exc.value.status == 403
    with pytest.raises(ApiError) as exc:
        check(widget, origin="https://example.com")  # a path restriction needs the page's path
    assert exc.value.code == "path_not_allowed"
    with pytest.raises(ApiError) as exc:
        check(widget, origin="https://evil.com", page_url="https://evil.com/help")
    assert exc.value.code == "origin_not_allowed"
    with pytest.raises(ApiError) as exc:  # the body cannot claim another origin's page
        check(widget, origin="https://evil.com", page_url="https://example.com/help")
    assert exc.value.code == "origin_not_allowed"
    with pytest.raises(ApiError) as exc:
        check(widget)
    assert exc.value.code == "origin_not_allowed"


def test_mejai_own_origin_is_a_preview():
    widget = ChatWidget(allowed_domains=[])
    result = check(widget, origin="http://testserver", own=("http://testserver/",))
    assert result.preview


# --- patterns frame-ancestors cannot express (issue 9, kind 8) --------------------------------

# CSP3 host-source: scheme "://" ( "*" / ["*."] 1*host-char *("." 1*host-char) ) [":" (1*DIGIT / "*")]
_CSP_HOST_SOURCE = re.compile(r"^https?://(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:(\d+|\*))?$")


@pytest.mark.parametrize(
    "bad,words",
    [
        ("[::1]", "IPv6"),
        ("[::1]:8000", "IPv6"),
        ("http://[2001:db8::1]", "IPv6"),
        ("*.0.0.1", "not an IP address"),
        ("*.127.0.0.1:*", "not an IP address"),
    ],
)
def test_patterns_frame_ancestors_cannot_express_are_refused_clearly(bad, words):
    with pytest.raises(ValidationError) as caught:
        allowed_domains_clean([bad])
    assert words in str(caught.value) and bad in str(caught.value)


@pytest.mark.parametrize(
    "good",
    ["localhost", "127.0.0.1", "127.0.0.1:8000", "예시.kr", "*.shop.example.com", "https://a-b.example.com:443",
     "http://localhost:*", "EXAMPLE.com."],
)
def test_every_accepted_pattern_gives_csp_host_sources(good):
    widget = ChatWidget(allowed_domains=allowed_domains_clean([good]))
    sources = widget_frame_ancestors(widget).split()[2:]
    assert sources and all(_CSP_HOST_SOURCE.match(source) for source in sources), sources


def test_a_stored_ipv6_entry_never_reaches_the_header():
    widget = ChatWidget(allowed_domains=["localhost", "[::1]"])
    assert widget_frame_ancestors(widget) == "frame-ancestors 'self' https://localhost:* http://localhost:*"
