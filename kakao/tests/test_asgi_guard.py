"""The ASGI guard in front of Django: past the in-flight limit a skill request gets the busy apology
without reaching the application; other paths are never touched."""

from __future__ import annotations

import asyncio
import json

from kakao import services
from kakao.asgi import KakaoSkillAdmission
from kakao.responses import skill_response_problems


class _Held:
    """An inner application that answers only when released."""

    def __init__(self):
        self.release = asyncio.Event()
        self.calls = 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def _request(app, path="/kakao/skill", method="POST"):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    await app({"type": "http", "path": path, "method": method, "headers": []}, receive, send)
    return sent


def test_past_the_limit_the_guard_answers_the_apology_without_the_application(settings):
    settings.KAKAO_SKILL_MAX_IN_FLIGHT = 1

    async def scenario():
        inner = _Held()
        app = KakaoSkillAdmission(inner)
        first = asyncio.create_task(_request(app))
        while inner.calls == 0:
            await asyncio.sleep(0)
        shed = await _request(app)  # answered while the first is still inside
        other = asyncio.create_task(_request(app, path="/api/runtime/chat"))  # never shed
        while inner.calls < 2:
            await asyncio.sleep(0)
        inner.release.set()
        await first
        await other
        after = await _request(app)  # room again: passed through
        return inner, shed, after, app

    inner, shed, after, app = asyncio.run(scenario())
    assert inner.calls == 3 and app.in_flight == 0 and after[1]["body"] == b"{}"
    start, body = shed
    assert start["status"] == 200 and (b"x-content-type-options", b"nosniff") in start["headers"]
    data = json.loads(body["body"])
    assert skill_response_problems(data) == [] and data["template"]["outputs"][0]["simpleText"]["text"] == services.BUSY_TEXT


def test_limit_zero_sheds_every_skill_request_but_not_other_methods(settings):
    settings.KAKAO_SKILL_MAX_IN_FLIGHT = 0

    async def scenario():
        inner = _Held()
        inner.release.set()
        app = KakaoSkillAdmission(inner)
        shed = await _request(app)
        passed = await _request(app, method="GET")  # the view answers 405 itself
        return inner, shed, passed

    inner, shed, passed = asyncio.run(scenario())
    assert inner.calls == 1
    assert json.loads(shed[1]["body"])["template"]["outputs"][0]["simpleText"]["text"] == services.BUSY_TEXT
    assert passed[1]["body"] == b"{}"
