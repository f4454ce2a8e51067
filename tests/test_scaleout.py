"""Scale-out: two web processes (`python -m mejai.server`, daphne) on one PostgreSQL and one Redis.

What has to hold when a load balancer spreads one conversation over several processes:

* the turns of one session are answered one at a time, in arrival order, whichever process took them;
* a widget's SSE stream on process A sees a turn that process B answers (runtime/live.py groups);
* an assistant client's tabs on A and B get the same frames, and a tab that drops on A resumes on B
  with every frame after its `last_seq`, once.

PostgreSQL + Redis only (marked): under MEJAI_REQUIRE_SERVICES=1 their absence fails the run.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from asgiref.sync import sync_to_async

from assistant.tests.support import access_token, member_make, new_client_id
from runtime.models import Turn
from runtime.testing.processes import web_processes
from widgets.tests.support_api import ORIGIN, PAGE

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def two_processes(transactional_db, settings, fake_llm):
    """Two `python -m mejai.server` (daphne) processes on the test database and Redis: their base URLs."""
    with web_processes(settings=settings, fake_llm=fake_llm, server="daphne") as addresses:
        yield [f"http://{address}" for address in addresses]


def _api(key: str) -> dict:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


# --- runtime: one session's turns, two processes ------------------------------------------------


async def test_turns_of_one_session_sent_to_two_processes_are_answered_in_order(two_processes, api_key, fake_llm):
    a, b = two_processes
    async with httpx.AsyncClient(timeout=30) as http:
        first = (await http.post(f"{a}/api/runtime/chat", json={"message": "시작"}, headers=_api(api_key))).json()
        session_id = first["session_id"]
        fake_llm.config.ttft = 1.0  # each answer takes a while, so the requests overlap

        async def send(base: str, text: str) -> dict:
            response = await http.post(f"{base}/api/runtime/chat", json={"message": text, "session_id": session_id},
                                       headers=_api(api_key))
            assert response.status_code == 200, response.text
            return response.json()

        replies = await asyncio.gather(send(a, "A"), send(b, "B"), send(a, "C"), send(b, "D"))
    turns = await sync_to_async(lambda: list(Turn.objects.filter(session_id=session_id, seq__gt=1).order_by("seq")))()
    assert [t.seq for t in turns] == [2, 3, 4, 5]
    assert sorted(t.user_text for t in turns) == ["A", "B", "C", "D"]
    for earlier, later in zip(turns, turns[1:], strict=False):
        assert later.created_at < earlier.completed_at  # they really overlapped
        assert later.started_at >= earlier.completed_at  # one at a time, in arrival order
        later_prompt = next(r["messages"] for r in fake_llm.requests if r["messages"][-1]["content"] == later.user_text)
        assert {"role": "assistant", "content": earlier.reply_text} in later_prompt  # it saw the earlier answer
    assert {r["turn_id"] for r in replies} == {str(t.id) for t in turns}


# --- widget SSE: a stream on A, the turn answered by B ---------------------------------------------


async def test_a_widget_stream_on_one_process_sees_a_turn_answered_by_the_other(two_processes, widget, fake_llm):
    a, b = two_processes
    fake_llm.config.reply = "첫째 둘째 셋째 넷째"
    async with httpx.AsyncClient(timeout=20) as http:
        started = (await http.post(f"{a}/api/widget/init", headers={"Origin": ORIGIN}, json={
            "public_key": widget.public_key, "page_url": PAGE, "visitor": {"id": "visitor-scale-1"}})).json()
        auth = {"Authorization": f"Bearer {started['widget_token']}", "Origin": ORIGIN}
        async with http.stream("GET", f"{a}/api/widget/stream?session_id={started['session_id']}",
                               headers=auth) as stream:
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            async for line in lines:  # "retry:" comes once the stream is subscribed
                if line.startswith("retry:"):
                    break
            reply = await http.post(f"{b}/api/widget/chat", json={"message": "넷까지 세어 줘"}, headers=auth)
            assert reply.status_code == 200, reply.text
            events = await asyncio.wait_for(_sse_until_message(lines), 20)
    names = [name for name, _ in events]
    assert names[0] == "start" and names[-1] == "message"
    assert events[0][1]["user_text"] == "넷까지 세어 줘"
    assert "".join(data["text"] for name, data in events if name == "delta") == "첫째 둘째 셋째 넷째"
    assert events[-1][1]["turn_id"] == reply.json()["turn_id"]
    assert events[-1][1]["message"] == reply.json()["message"]


async def _sse_until_message(lines) -> list[tuple[str, dict]]:
    events, name, data = [], None, None
    async for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and name is not None:
            events.append((name, data))
            if name == "message":
                return events
            name, data = None, None
    return events


@pytest.fixture
def widget(organization, agent):
    from widgets.models import ChatWidget

    return ChatWidget.objects.create(organization=organization, agent=agent, name="Shop",
                                     allowed_domains=["shop.example.com"])


# --- assistant: tabs and resume across processes -----------------------------------------------


class Tab:
    def __init__(self, base: str, client_id: str):
        self.url = base.replace("http://", "ws://") + f"/ws/chat/{client_id}"
        self.frames: list[dict] = []

    async def open(self, token: str, **auth) -> Tab:
        self.ws = await websockets.connect(self.url, max_size=None)
        await self.ws.send(json.dumps({"type": "auth", "token": token, **auth}))
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

    def stream(self) -> list[dict]:
        return [f for f in self.frames if f["type"] not in ("ready", "pong")]


def _chat(message: str) -> dict:
    return {"type": "chat", "message": message, "project_id": "acme", "agent_name": "support"}


def _text(frames: list[dict]) -> str:
    return "".join(f["content"] for f in frames if f["type"] == "response")


async def test_assistant_tabs_and_resume_across_processes(two_processes, organization, agent, fake_llm):
    a, b = two_processes
    member = await sync_to_async(member_make)(organization, "scale-member")
    token = await sync_to_async(access_token)(member)
    client_id = new_client_id()

    # Fan-out: one client_id open on both processes, the chat sent on B: both tabs get the same frames.
    fake_llm.config.reply = "두 프로세스의 탭이 같은 글을 받습니다"
    on_a, on_b = await Tab(a, client_id).open(token), await Tab(b, client_id).open(token)
    await on_b.send(_chat("안녕"))
    await on_a.until("end")
    await on_b.until("end")
    assert on_a.stream() == on_b.stream()
    assert _text(on_a.stream()) == "두 프로세스의 탭이 같은 글을 받습니다"

    # Resume: the tab on A drops mid-answer and comes back on B with its last seq.
    fake_llm.config.reply = " ".join(f"단어{i}" for i in range(120))
    fake_llm.config.tokens_per_second = 60
    await on_b.ws.close()
    await on_a.send(_chat("길게"))
    while (await on_a.until("response"))["seq"] < on_a.stream()[0]["seq"] + 8:
        pass
    seen = on_a.stream()
    await on_a.ws.close()
    back = await Tab(b, client_id).open(token, last_seq=seen[-1]["seq"])
    end = await back.until("end")
    frames = seen + back.stream()
    assert [f["seq"] for f in frames] == list(range(frames[0]["seq"], end["seq"] + 1))  # no gap, no repeat
    turn = await sync_to_async(Turn.objects.get)(pk=end["turn_id"])
    assert _text([f for f in frames if f.get("turn_id") == end["turn_id"]]) == turn.reply_text
    await back.ws.close()
