"""A frame the channel layer drops (a process's channel over capacity) is not lost: a later frame
fills the gap from the backlog, and a dropped last frame of a turn is read from the backlog after
a short silence (consumers.CATCH_UP_SECONDS)."""

from __future__ import annotations

import pytest
from channels.layers import get_channel_layer

from assistant import connections
from assistant.tests.support import ChatSocket, chat_frame, new_client_id, text_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lossy_layer(monkeypatch):
    """Every frame goes through the channel layer, which drops the kinds listed in `dropped`."""
    layer = get_channel_layer()
    original = layer.group_send
    dropped: set[str] = set()
    lost: list[dict] = []

    async def group_send(group, message):
        frame = message.get("frame") or {}
        if message.get("type") == "assistant.frame" and frame.get("type") in dropped:
            lost.append(frame)
            return None
        return await original(group, message)

    monkeypatch.setattr(connections, "_local_delivery_possible", lambda layer: False)
    monkeypatch.setattr(layer, "group_send", group_send)
    return dropped, lost


async def test_a_dropped_end_still_reaches_the_socket(member_token, fake_llm, lossy_layer):
    dropped, lost = lossy_layer
    dropped.add("end")
    fake_llm.config.reply = "마지막 프레임이 없어져도 끝을 받습니다"
    ws = await ChatSocket(new_client_id()).open()
    await ws.auth(member_token)
    await ws.send(chat_frame("안녕"))
    end = await ws.until("end")
    assert [f["type"] for f in lost] == ["end"] and lost[0]["seq"] == end["seq"]
    seqs = [f["seq"] for f in ws.frames if f["type"] != "ready"]
    assert seqs == list(range(seqs[0], end["seq"] + 1))  # nothing missing, nothing twice
    assert text_of(ws.of_turn(end["turn_id"])) == "마지막 프레임이 없어져도 끝을 받습니다"
    await ws.close()


async def test_a_dropped_start_is_filled_by_the_next_frame(member_token, fake_llm, lossy_layer):
    dropped, lost = lossy_layer
    dropped.add("start")
    fake_llm.config.reply = "중간 프레임"
    ws = await ChatSocket(new_client_id()).open()
    await ws.auth(member_token)
    await ws.send(chat_frame("안녕"))
    end = await ws.until("end")
    kinds = [f["type"] for f in ws.of_turn(end["turn_id"])]
    assert lost and kinds[:2] == ["queued", "start"] and kinds.count("start") == 1
    await ws.close()
