"""The operator's Kakao simulator on the bot's admin page (issue 11, 4): the real skill path, nothing posted."""

from __future__ import annotations

import ipaddress
import json
import socket

import pytest
from django.contrib.auth.models import Permission, User

from kakao.models import CallbackTask, KakaoBot, KakaoUser
from mejai.overview import overview_build
from runtime.models import Agent, Membership, Session, Turn


@pytest.fixture
def operator(organization):
    def make(org, name="op"):
        user = User.objects.create_user(name, password="pw", is_staff=True)
        user.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=["kakao", "runtime"]))
        Membership.objects.create(user=user, organization=org)
        return user

    return make


@pytest.fixture
def no_outbound(monkeypatch):
    """Every connection that leaves the machine, and every callback POST, is recorded and refused."""
    attempts: list = []
    real_connect = socket.socket.connect

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else ""
        try:
            local = not host or ipaddress.ip_address(host).is_loopback
        except ValueError:
            local = host == "localhost"
        if not local:
            attempts.append(address)
            raise OSError("outbound connection refused in tests")
        return real_connect(sock, address)

    def post(**kwargs):
        attempts.append(kwargs.get("url"))
        raise AssertionError("the simulator must not post a callback")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr("kakao.services.callback_post", post)
    monkeypatch.setattr("kakao.clients.callback.callback_post", post)
    return attempts


def _url(bot) -> str:
    return f"/admin/kakao/kakaobot/{bot.pk}/simulator/"


def test_an_utterance_shows_the_acknowledgement_and_the_callback_body(
        client, organization, kakao_bot, operator, offline_llm, no_outbound, enqueued):
    user = operator(organization)
    client.force_login(user)
    change_page = client.get(f"/admin/kakao/kakaobot/{kakao_bot.pk}/change/").content.decode()
    assert _url(kakao_bot) in change_page and "카카오 시뮬레이터" in change_page
    assert client.get(_url(kakao_bot)).status_code == 200

    response = client.post(_url(kakao_bot), {"utterance": "배송은 얼마나 걸려요?"})
    assert response.status_code == 200
    result = response.context["result"]
    # A real Open Builder 2.0 request for the operator's test user, with a callbackUrl to the capture.
    assert result.request["userRequest"]["utterance"] == "배송은 얼마나 걸려요?"
    assert result.request["userRequest"]["user"]["id"] == f"mejai-simulator-{user.pk}"
    assert result.request["userRequest"]["callbackUrl"].startswith("https://simulator.mejai.invalid/")
    # The immediate skill response is the useCallback acknowledgement with the bot's waiting text.
    assert result.immediate["version"] == "2.0" and result.immediate["useCallback"] is True
    assert result.immediate["data"]["text"] == kakao_bot.waiting_text
    # The callback body is a Kakao response with the (offline) answer, rendered as bubbles.
    outputs = result.callback["template"]["outputs"]
    assert result.callback["version"] == "2.0" and outputs and "오프라인" in outputs[0]["simpleText"]["text"]
    page = response.content.decode()
    assert "mj-bubble mj-bot" in page and "useCallback" in page
    assert json.loads(response.context["callback_json"]) == result.callback

    # Stored as a preview conversation of the test user; no delivery, nothing queued, nothing posted.
    turn = Turn.objects.get()
    assert turn.session.metadata["preview"] is True and turn.session.channel == "kakao"
    assert KakaoUser.objects.get().user_key == f"mejai-simulator-{user.pk}"
    assert not CallbackTask.objects.exists()
    assert enqueued == [] and no_outbound == []

    # A second utterance continues the same conversation; "start over" opens a new one.
    client.post(_url(kakao_bot), {"utterance": "고마워요"})
    assert Session.objects.count() == 1 and Session.objects.get().last_seq == 2
    assert client.post(_url(kakao_bot), {"restart": "1"}).status_code == 302
    client.post(_url(kakao_bot), {"utterance": "새 대화"})
    assert Session.objects.count() == 2

    # Counted nowhere: not in the overview, not among customers' conversations.
    [figures] = overview_build(organizations=[organization])
    assert figures.totals.messages == 0
    assert "배송은" not in client.get("/admin/runtime/conversation/").content.decode()
    assert not CallbackTask.objects.exists() and enqueued == [] and no_outbound == []


@pytest.mark.parametrize(("utterance", "says"), [("", "비어 있습니다"), ("   ", "비어 있습니다"),
                                               ("가" * 1001, "1,000자"), ("안녕\x00하세요", "NUL")])
def test_bad_utterances_show_a_clear_message_and_store_nothing(
        client, organization, kakao_bot, operator, offline_llm, no_outbound, utterance, says):
    client.force_login(operator(organization))
    response = client.post(_url(kakao_bot), {"utterance": utterance})
    assert response.status_code == 400
    page = response.content.decode()
    assert "errornote" in page and says in page and "(" in page  # bilingual: Korean first, English in parentheses
    assert not Turn.objects.exists() and not CallbackTask.objects.exists() and no_outbound == []


def test_staff_of_another_organization_cannot_open_or_use_the_simulator(
        client, organization, other_organization, kakao_bot, operator, offline_llm):
    client.force_login(operator(other_organization, name="globex-op"))
    assert client.get(_url(kakao_bot)).status_code == 404
    assert client.post(_url(kakao_bot), {"utterance": "hi"}).status_code == 404
    assert client.post(_url(kakao_bot), {"restart": "1"}).status_code == 404
    assert not Turn.objects.exists() and not KakaoUser.objects.exists()


def test_staff_without_kakao_permissions_are_refused(client, organization, kakao_bot, offline_llm):
    user = User.objects.create_user("noperm", password="pw", is_staff=True)
    Membership.objects.create(user=user, organization=organization)
    client.force_login(user)
    assert client.get(_url(kakao_bot)).status_code == 403
    assert client.post(_url(kakao_bot), {"utterance": "hi"}).status_code == 403
    assert not Turn.objects.exists()


def test_the_simulator_is_scoped_by_the_bots_own_organization(client, organization, other_organization, operator,
                                                              offline_llm):
    theirs = KakaoBot.objects.create(organization=other_organization, name="globex",
                                     agent=Agent.objects.create(organization=other_organization, name="g"),
                                     bot_id="globexbot0000000000000000")
    client.force_login(operator(organization))
    assert client.get(_url(theirs)).status_code == 404
