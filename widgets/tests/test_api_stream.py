# ruff: noqa: F811  (fixtures imported from support_api)
"""GET /api/widget/stream over a real server: another tab receives the deltas, Last-Event-ID resume,
single-use tickets, and the bad-input cases of the stream."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from widgets.tests.support_api import ORIGIN, PAGE, other_widget, sse_parse, widget  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


async def _init(http, widget, visitor_id="visitor-aaaa-1") -> dict:
    response = await http.post("/api/widget/init", headers={"Origin": ORIGIN},
                               json={"public_key": widget.public_key, "page_url": PAGE, "visitor": {"id": visitor_id}})
    assert response.status_code == 200, response.text
    return response.json()


class SSEReader:
    """Reads an httpx streaming response event by event."""

    def __init__(self, response):
        self.response = response
        self.lines = response.aiter_lines()
        self.opened = False

    async def opened_ok(self):
        # The stream's first bytes ("retry:") come once it is subscribed.
        async for line in self.lines:
            if line.startswith("retry:"):
                self.opened = True
                return

    async def next_event(self, timeout=10.0):
        async def read():
            block: list[str] = []
            async for line in self.lines:
                if line == "":
                    if any(part.startswith("event:") for part in block):
                        return sse_parse("\n".join(block) + "\n\n")[0]
                    block = []
                    continue
                block.append(line)
            return None

        return await asyncio.wait_for(read(), timeout)

    async def until(self, name: str) -> list:
        seen = []
        while True:
            event = await self.next_event()
            assert event is not None, seen
            seen.append(event)
            if event[1] == name:
                return seen


async def test_another_tab_receives_the_deltas(live_server_asgi, widget, fake_llm):
    fake_llm.config.reply = "첫째 둘째 셋째 넷째"
    async with httpx.AsyncClient(base_url=live_server_asgi.url, timeout=10) as tab1, \
            httpx.AsyncClient(base_url=live_server_asgi.url, timeout=10) as tab2:
        started = await _init(tab1, widget)
        auth = {"Authorization": f"Bearer {started['widget_token']}"}
        async with tab2.stream("GET", f"/api/widget/stream?session_id={started['session_id']}", headers=auth) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            reader = SSEReader(response)
            await reader.opened_ok()
            reply = await tab1.post("/api/widget/chat", json={"message": "넷까지 세어 줘"}, headers=auth)
            assert reply.status_code == 200, reply.text
            events = await reader.until("message")
    names = [name for _, name, _ in events]
    assert names[0] == "start" and names.count("delta") >= 4
    assert events[0][2]["user_text"] == "넷까지 세어 줘"  # the other tab can show what was sent
    assert "".join(data["text"] for _, name, data in events if name == "delta") == "첫째 둘째 셋째 넷째"
    message_id, _, message = events[-1]
    assert message["message"] == reply.json()["message"] and message["turn_id"] == reply.json()["turn_id"]
    assert message_id == "1"
    assert [i for i, n, _ in events if n == "delta"][0].startswith("1.")


async def test_streamed_chat_in_one_tab_reaches_the_other(live_server_asgi, widget, fake_llm):
    fake_llm.config.reply = "가 나 다"
    async with httpx.AsyncClient(base_url=live_server_asgi.url, timeout=10) as http:
        started = await _init(http, widget)
        auth = {"Authorization": f"Bearer {started['widget_token']}"}
        async with http.stream("GET", "/api/widget/stream", headers=auth) as other_tab:
            reader = SSEReader(other_tab)
            await reader.opened_ok()
            async with http.stream("POST", "/api/widget/chat", json={"message": "하이"},
                                   headers={**auth, "Accept": "text/event-stream"}) as own:
                own_events = sse_parse((await own.aread()).decode())
            events = await reader.until("message")
    assert [n for _, n, _ in own_events][-1] == "message"
    assert [d["text"] for _, n, d in events if n == "delta"] == [d["text"] for _, n, d in own_events if n == "delta"]


async def test_last_event_id_resume_replays_finished_turns(live_server_asgi, widget, fake_llm):
    async with httpx.AsyncClient(base_url=live_server_asgi.url, timeout=10) as http:
        started = await _init(http, widget)
        auth = {"Authorization": f"Bearer {started['widget_token']}"}
        first = (await http.post("/api/widget/chat", json={"message": "하나"}, headers=auth)).json()
        second = (await http.post("/api/widget/chat", json={"message": "둘"}, headers=auth)).json()

        async def replay(last_id, via_query=False):
            url = "/api/widget/stream" + (f"?last_event_id={last_id}" if via_query else "")
            headers = auth if via_query else {**auth, "Last-Event-ID": last_id}
            async with http.stream("GET", url, headers=headers) as response:
                reader = SSEReader(response)
                await reader.opened_ok()
                found = []
                try:
                    while True:
                        found.append(await reader.next_event(timeout=0.5))
                except TimeoutError:
                    return found

        after_first = await replay("1")
        assert [(i, d["turn_id"]) for i, _, d in after_first] == [("2", second["turn_id"])]
        within_first = await replay("1.2", via_query=True)  # the tab saw part of turn 1
        assert [d["turn_id"] for _, _, d in within_first] == [first["turn_id"], second["turn_id"]]
        assert await replay("2") == []
        assert await replay("garbage") == []


async def test_stream_ticket_single_use_and_bad_input(live_server_asgi, widget, other_widget, fake_llm):
    async with httpx.AsyncClient(base_url=live_server_asgi.url, timeout=10) as http:
        started = await _init(http, widget)
        auth = {"Authorization": f"Bearer {started['widget_token']}"}
        issued = await http.post("/api/widget/stream-ticket", json={}, headers=auth)
        assert issued.status_code == 201, issued.text
        ticket = issued.json()["ticket"]
        async with http.stream("GET", f"/api/widget/stream?ticket={ticket}") as response:
            assert response.status_code == 200
            await SSEReader(response).opened_ok()
        again = await http.get(f"/api/widget/stream?ticket={ticket}")
        assert again.status_code == 401 and again.json()["error"]["code"] == "ticket_invalid"

        missing = await http.get(f"/api/widget/stream?session_id={started['session_id']}")
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "token_missing"
        bad = await http.get("/api/widget/stream", headers={"Authorization": "Bearer abc.def.ghi"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "token_invalid"

        theirs = await _init(http, widget, visitor_id="visitor-zzzz-9")
        foreign = await http.get(f"/api/widget/stream?session_id={theirs['session_id']}", headers=auth)
        assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "session_not_found"
        ticket = (await http.post("/api/widget/stream-ticket", json={}, headers=auth)).json()["ticket"]
        other_session = await http.get(f"/api/widget/stream?ticket={ticket}&session_id={theirs['session_id']}")
        assert other_session.status_code == 404
        not_json = await http.post("/api/widget/stream-ticket", content=b"{x", headers={**auth, "Content-Type": "application/json"})
        assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "malformed_json"


async def test_token_renewal_by_reinit_keeps_the_conversation(live_server_asgi, widget, fake_llm, settings):
    async with httpx.AsyncClient(base_url=live_server_asgi.url, timeout=10) as http:
        started = await _init(http, widget)
        old = {"Authorization": f"Bearer {started['widget_token']}"}
        first = (await http.post("/api/widget/chat", json={"message": "주문 확인"}, headers=old)).json()
        # The token expires (forged here with the real key and a past expiry)...
        import time

        import jwt

        from widgets.tokens import token_backend

        payload = jwt.decode(started["widget_token"], options={"verify_signature": False})
        expired = jwt.encode({**payload, "exp": int(time.time()) - 10}, token_backend().signing_key, algorithm="HS256")
        refused = await http.post("/api/widget/chat", json={"message": "계속"},
                                  headers={"Authorization": f"Bearer {expired}"})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_expired"
        # ...the host page re-inits and the conversation continues in the same session.
        renewed = await _init(http, widget)
        assert renewed["session_id"] == started["session_id"]
        assert renewed["history"][0]["turn_id"] == first["turn_id"]
        second = (await http.post("/api/widget/chat", json={"message": "계속"},
                                  headers={"Authorization": f"Bearer {renewed['widget_token']}"})).json()
        assert second["session_id"] == started["session_id"]
    assert json.dumps(second)


async def test_stream_ends_when_the_token_expires(live_server_asgi, widget, settings):
    import time

    import jwt

    from widgets.tokens import token_backend

    async with httpx.AsyncClient(base_url=live_server_asgi.url, timeout=10) as http:
        started = await _init(http, widget)
        payload = jwt.decode(started["widget_token"], options={"verify_signature": False})
        short = jwt.encode({**payload, "exp": int(time.time()) + 2}, token_backend().signing_key, algorithm="HS256")
        async with http.stream("GET", "/api/widget/stream", headers={"Authorization": f"Bearer {short}"}) as response:
            reader = SSEReader(response)
            await reader.opened_ok()
            event = await reader.next_event(timeout=8)
    assert event[1] == "error" and event[2]["code"] == "token_expired"


async def test_answer_finishes_when_the_sender_leaves_mid_answer(live_server_asgi, widget, fake_llm):
    """Widget answers outlive their connection (docs/runtime.md): the other tab gets the whole answer."""
    from runtime.models import Turn

    fake_llm.config.reply = " ".join(["단어"] * 40)
    fake_llm.config.tokens_per_second = 20
    async with httpx.AsyncClient(base_url=live_server_asgi.url, timeout=10) as http, \
            httpx.AsyncClient(base_url=live_server_asgi.url, timeout=10) as sender:
        started = await _init(http, widget)
        auth = {"Authorization": f"Bearer {started['widget_token']}"}
        async with http.stream("GET", "/api/widget/stream", headers=auth) as other_tab:
            reader = SSEReader(other_tab)
            await reader.opened_ok()
            async with sender.stream("POST", "/api/widget/chat", json={"message": "길게 말해 줘"},
                                     headers={**auth, "Accept": "text/event-stream"}) as own:
                async for line in own.aiter_lines():
                    if line == "event: delta":
                        break  # the sending tab goes away after the first delta
            events = await reader.until("message")
    assert events[-1][2]["message"] == fake_llm.config.reply
    assert not any(name == "error" for _, name, _ in events)
    turn = await Turn.objects.aget(pk=events[-1][2]["turn_id"])
    assert turn.status == Turn.Status.COMPLETED and turn.reply_text == fake_llm.config.reply


async def test_many_tabs_of_one_session_and_none_of_another(live_server_asgi, widget, fake_llm):
    """Streams share one channel-layer subscription per process (SessionHub): routing stays per session."""
    fake_llm.config.reply = "모두 받았나요"
    async with httpx.AsyncClient(base_url=live_server_asgi.url, timeout=10) as http:
        mine = await _init(http, widget)
        theirs = await _init(http, widget, visitor_id="visitor-zzzz-9")
        auth = {"Authorization": f"Bearer {mine['widget_token']}"}
        other_auth = {"Authorization": f"Bearer {theirs['widget_token']}"}
        async with http.stream("GET", "/api/widget/stream", headers=auth) as a1, \
                http.stream("GET", "/api/widget/stream", headers=auth) as a2, \
                http.stream("GET", "/api/widget/stream", headers=auth) as a3, \
                http.stream("GET", "/api/widget/stream", headers=other_auth) as b:
            readers = [SSEReader(r) for r in (a1, a2, a3, b)]
            for reader in readers:
                await reader.opened_ok()
            sent = (await http.post("/api/widget/chat", json={"message": "세 탭"}, headers=auth)).json()
            for reader in readers[:3]:
                events = await reader.until("message")
                assert events[-1][2]["turn_id"] == sent["turn_id"]
            with pytest.raises(TimeoutError):
                await readers[3].next_event(timeout=1.0)
