"""The SSRF guard on callbackUrl: only https://<allowed host>:443/v1/bots/<id>/callback/<token>."""

from __future__ import annotations

import pytest

from kakao.security import CallbackUrlRejected, callback_url_check, secret_matches

GOOD = "https://bot-api.kakao.com/v1/bots/5ae9b76d7409b11ec845b746/callback/-damddEwVMRHufi6uUr63Ir7veOUGTFaiVhcOWTOhijyBuCT-v4vu6V32YmyF8ZNqI8K7kn_tKY0"
HOSTS = ["bot-api.kakao.com"]

BAD = {
    "http": ("http://bot-api.kakao.com/v1/bots/abc/callback/tok", "scheme"),
    "other host": ("https://evil.example/v1/bots/abc/callback/tok", "host_not_allowed"),
    "ip literal": ("https://93.184.216.34/v1/bots/abc/callback/tok", "ip_literal"),
    "ipv6 literal": ("https://[::1]/v1/bots/abc/callback/tok", "ip_literal"),
    "loopback ip": ("https://127.0.0.1/v1/bots/abc/callback/tok", "ip_literal"),
    "userinfo trick": ("https://bot-api.kakao.com@evil.example/v1/bots/abc/callback/tok", "userinfo"),
    "userinfo": ("https://user:pw@bot-api.kakao.com/v1/bots/abc/callback/tok", "userinfo"),
    "suffix trick": ("https://bot-api.kakao.com.evil.example/v1/bots/abc/callback/tok", "host_not_allowed"),
    "prefix trick": ("https://evilbot-api.kakao.com/v1/bots/abc/callback/tok", "host_not_allowed"),
    "other port": ("https://bot-api.kakao.com:8443/v1/bots/abc/callback/tok", "port"),
    "query": ("https://bot-api.kakao.com/v1/bots/abc/callback/tok?next=http://evil", "query"),
    "empty query": ("https://bot-api.kakao.com/v1/bots/abc/callback/tok?", "query"),
    "fragment": ("https://bot-api.kakao.com/v1/bots/abc/callback/tok#x", "fragment"),
    "absurdly long": ("https://bot-api.kakao.com/v1/bots/abc/callback/" + "a" * 5000, "too_long"),
    "other path": ("https://bot-api.kakao.com/admin/delete", "path"),
    "dot segments": ("https://bot-api.kakao.com/v1/bots/abc/callback/../../admin", "path"),
    "encoded slash": ("https://bot-api.kakao.com/v1/bots/abc/callback/a%2F..%2Fb", "path"),
    "whitespace": ("https://bot-api.kakao.com/v1/bots/abc/callback/tok en", "unsafe_characters"),
    "newline": ("https://bot-api.kakao.com/v1/bots/abc/callback/tok\r\nHost: evil", "unsafe_characters"),
    "non-ascii host": ("https://bot-api.kakao.com\u3002evil.example/v1/bots/abc/callback/tok", "unsafe_characters"),
    "backslash": ("https://bot-api.kakao.com\\@evil.example/v1/bots/abc/callback/tok", "userinfo"),
    "no scheme": ("//bot-api.kakao.com/v1/bots/abc/callback/tok", "scheme"),
    "javascript": ("javascript:alert(1)", "scheme"),
    "not a string": (["https://bot-api.kakao.com/v1/bots/abc/callback/tok"], "not_a_string"),
    "bad port": ("https://bot-api.kakao.com:99999/v1/bots/abc/callback/tok", "unparsable"),
}


def test_the_kakao_shape_passes_verbatim():
    checked = callback_url_check(GOOD, allowed_hosts=HOSTS)
    assert checked.url == GOOD and checked.host == "bot-api.kakao.com" and checked.bot_id == "5ae9b76d7409b11ec845b746"
    assert checked.token.startswith("-damdd") and len(checked.token_hash) == 64


def test_development_bot_id_and_explicit_443_pass():
    url = "https://bot-api.kakao.com:443/v1/bots/5ae9b76d7409b11ec845b746!/callback/AbCdEf_123-xyz"
    assert callback_url_check(url, allowed_hosts=HOSTS).bot_id.endswith("!")


def test_host_compare_ignores_case():
    assert callback_url_check(GOOD.replace("bot-api.kakao.com", "BOT-API.Kakao.com"), allowed_hosts=HOSTS)


@pytest.mark.parametrize("name", sorted(BAD))
def test_rejected(name, settings):
    url, reason = BAD[name]
    with pytest.raises(CallbackUrlRejected) as caught:
        callback_url_check(url, allowed_hosts=HOSTS)
    if reason:
        assert caught.value.reason == reason


def test_loopback_http_only_under_the_test_setting(settings):
    url = "http://127.0.0.1:8123/v1/bots/abc/callback/tok"
    with pytest.raises(CallbackUrlRejected):
        callback_url_check(url, allowed_hosts=["127.0.0.1"])
    settings.KAKAO_TEST_LOOPBACK_CALLBACKS = True
    assert callback_url_check(url, allowed_hosts=["127.0.0.1"]).host == "127.0.0.1"
    with pytest.raises(CallbackUrlRejected):  # still only when the bot allows the host
        callback_url_check(url, allowed_hosts=HOSTS)
    with pytest.raises(CallbackUrlRejected):  # and only loopback
        callback_url_check("http://10.0.0.1:8123/v1/bots/abc/callback/tok", allowed_hosts=["10.0.0.1"])


def test_secret_compare():
    assert secret_matches("abc", "abc")
    assert not secret_matches("abd", "abc") and not secret_matches("", "abc") and not secret_matches(None, "abc")
    assert not secret_matches("abc", "")
    assert not secret_matches("가나다", "abc")


def test_dot_only_token_is_rejected():
    with pytest.raises(CallbackUrlRejected):
        callback_url_check("https://bot-api.kakao.com/v1/bots/abc/callback/..", allowed_hosts=HOSTS)
