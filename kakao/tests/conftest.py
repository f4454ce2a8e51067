"""Kakao test fixtures: a bot, fixture payloads, the fake Kakao receiver, and no accidental outbound calls."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

FIXTURES = Path("/work/shared/fixtures/kakao")
if not FIXTURES.exists():  # a copy travels with the app for other checkouts
    FIXTURES = Path(__file__).resolve().parent / "fixtures"

BOT_ID = "5ae9b76d7409b11ec845b746"
SECRET_HEADER = "X-Mejai-Skill-Secret"
SECRET = "s3cret-value-for-tests"


def fixture_json(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def kakao_bot(organization, agent):
    from kakao.models import KakaoBot

    return KakaoBot.objects.create(
        organization=organization, agent=agent, name="상담봇", bot_id=BOT_ID, secret_header_name=SECRET_HEADER,
        secret_header_value=SECRET, allowed_callback_hosts=["bot-api.kakao.com", "127.0.0.1"],
    )


@pytest.fixture(autouse=True)
def _kakao_defaults(settings):
    """Short settle/backoff for tests; the bots cache starts empty."""
    from kakao.services import bots_cache_clear

    settings.KAKAO_CALLBACK_SETTLE_SECONDS = 0.2
    settings.KAKAO_CALLBACK_BACKOFF_SECONDS = 0.05
    settings.KAKAO_CALLBACK_READ_TIMEOUT = 2.0
    settings.KAKAO_CALLBACK_CONNECT_TIMEOUT = 1.0
    bots_cache_clear()
    yield
    bots_cache_clear()


@pytest.fixture(autouse=True)
def enqueued(monkeypatch, request):
    """Jobs queued by the skill endpoint are recorded, not run — unless the test asks for live_delivery."""
    calls: list[str] = []
    if "live_delivery" not in request.fixturenames:
        monkeypatch.setattr("kakao.services.callback_enqueue", lambda *, task_id, announce=False: calls.append(str(task_id)))
    return calls


@pytest.fixture
def live_delivery():
    """Marker fixture: the skill endpoint really queues the delivery job."""
    return True


@pytest.fixture(scope="session")
def kakao_receiver_server():
    from kakao.fakes.callback_receiver import FakeKakaoReceiver

    server = FakeKakaoReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def kakao_receiver(kakao_receiver_server, settings):
    """The fake Kakao callback receiver, reset; loopback callback URLs allowed for this test only."""
    settings.KAKAO_TEST_LOOPBACK_CALLBACKS = True
    kakao_receiver_server.reset()
    yield kakao_receiver_server
    kakao_receiver_server.reset()


@pytest.fixture
def skill_body():
    """A fixture request, deep-copied, with optional changes: skill_body("skill_request_callback.json", utterance=…)."""

    def make(name: str = "skill_request_callback.json", *, utterance=..., callback_url=..., user_id=..., **top):
        body = copy.deepcopy(fixture_json(name))
        if utterance is not ...:
            if utterance is None:
                body["userRequest"].pop("utterance", None)
            else:
                body["userRequest"]["utterance"] = utterance
        if callback_url is not ...:
            if callback_url is None:
                body["userRequest"].pop("callbackUrl", None)
            else:
                body["userRequest"]["callbackUrl"] = callback_url
        if user_id is not ...:
            body["userRequest"]["user"]["id"] = user_id
        body.update(top)
        return body

    return make


def post_skill(client, body, *, secret: str | None = SECRET, path: str = "/kakao/skill",
               content_type: str = "application/json;charset=UTF-8", raw: bytes | None = None):
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    data = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode()
    return client.post(path, data=data, content_type=content_type, headers=headers)


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]


def texts(body: dict) -> list[str]:
    return [o["simpleText"]["text"] for o in body["template"]["outputs"]]
