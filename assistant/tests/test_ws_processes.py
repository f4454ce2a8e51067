"""ws/chat across two web processes on PostgreSQL + Redis: tabs on different processes, stop and resume
on the other process, ping during an answer, and another organization sees nothing."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from asgiref.sync import sync_to_async

from assistant import connections
from assistant.tests.support import access_token, new_client_id, text_of
from runtime.models import Turn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]


class Remote:
    """A real WebSocket client of one web process."""

    def __init__(self, host: str, client_id: str):
        self.url = f"ws://{host}/ws/chat/{client_id}"
        self.frames: list[dict] = []

    async def open(self, token: str, **auth) -> Remote:
        self.ws = await websockets.connect(self.url, max_size=None)
        await self.send({"type": "auth", "token": token, **auth})
        await self.until("ready")
        return self

    async def send(self, frame: dict) -> None:
        await self.ws.send(json.dumps(frame))

    async def until(self, kind: str, timeout: float = 20) -> dict:
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            self.frames.append(frame)
            if frame["type"] == kind:
                return frame

    async def close(self) -> None:
        await self.ws.close()

    def stream(self) -> list[dict]:
        return [f for f in self.frames if f["type"] not in ("ready", "pong")]


def chat(message: str, **extra) -> dict:
    return {"type": "chat", "message": message, "project_id": "acme", "agent_name": "support", **extra}


async def test_two_tabs_on_two_processes_and_stop_from_the_other(web_processes, member, fake_llm):
    token = await sync_to_async(access_token)(member)
    client_id = new_client_id()
    a, b = web_processes
    tab1, tab2 = await Remote(a, client_id).open(token), await Remote(b, client_id).open(token)
    fake_llm.config.reply = "다른 프로세스의 탭도 받습니다"
    await tab1.send(chat("안녕"))
    await tab1.until("end")
    await tab2.until("end")
    assert tab1.stream() == tab2.stream() and text_of(tab2.stream()) == "다른 프로세스의 탭도 받습니다"

    fake_llm.config.reply = " ".join(f"w{i}" for i in range(600))
    fake_llm.config.tokens_per_second = 40
    await tab1.send(chat("길게"))
    await tab2.until("response")
    await tab2.send({"type": "ping"})
    assert (await tab2.until("pong", timeout=1))["type"] == "pong"
    await tab2.send({"type": "stop"})  # tab1's process drives the answer
    end = await tab1.until("end")
    assert end["stopped"] is True and (await tab2.until("end"))["stopped"] is True
    turn = await sync_to_async(Turn.objects.get)(pk=end["turn_id"])
    assert turn.is_finished and turn.reply_text
    for tab in (tab1, tab2):
        await tab.close()


async def test_resume_on_the_other_process_mid_answer(web_processes, member, fake_llm):
    token = await sync_to_async(access_token)(member)
    client_id = new_client_id()
    a, b = web_processes
    fake_llm.config.reply = " ".join(f"단어{i}" for i in range(150))
    fake_llm.config.tokens_per_second = 60
    first = await Remote(a, client_id).open(token)
    await first.send(chat("계속"))
    while (await first.until("response"))["seq"] < 6:
        pass
    seen = first.stream()
    await first.close()
    back = await Remote(b, client_id).open(token, last_seq=seen[-1]["seq"])
    end = await back.until("end")
    frames = seen + back.stream()
    assert [f["seq"] for f in frames] == list(range(1, end["seq"] + 1))
    turn = await sync_to_async(Turn.objects.get)(pk=end["turn_id"])
    assert text_of(frames) == turn.reply_text
    await back.close()


async def test_three_chats_on_two_processes_are_answered_in_order(web_processes, member, fake_llm):
    token = await sync_to_async(access_token)(member)
    client_id = new_client_id()
    a, b = web_processes
    fake_llm.config.tokens_per_second = 300
    tab1, tab2 = await Remote(a, client_id).open(token), await Remote(b, client_id).open(token)
    await tab1.send(chat("하나", id="1"))
    await tab2.send(chat("둘", id="2"))
    await tab1.send(chat("셋", id="3"))
    for _ in range(3):
        await tab1.until("end")
    order = [(f["type"], f["turn_id"]) for f in tab1.frames if f["type"] in ("start", "end")]
    starts = [t for kind, t in order if kind == "start"]
    assert order == [x for t in starts for x in (("start", t), ("end", t))]
    for tab in (tab1, tab2):
        await tab.close()


async def test_org_broadcast_reaches_its_organization_only(web_processes, member, other_member):
    a, b = web_processes
    mine = await Remote(a, new_client_id()).open(await sync_to_async(access_token)(member))
    theirs = await Remote(b, new_client_id()).open(await sync_to_async(access_token)(other_member))
    await connections.org_broadcast(organization_id=member.mejai_membership.organization_id,
                                    frame={"type": "auto_report", "content": "점검 안내", "task_id": None})
    notice = await mine.until("auto_report")
    assert notice["content"] == "점검 안내"
    await theirs.send({"type": "ping"})
    await theirs.until("pong")
    assert [f["type"] for f in theirs.frames] == ["ready", "pong"]
    await mine.close()
    await theirs.close()
