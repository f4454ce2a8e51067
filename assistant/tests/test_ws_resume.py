"""Resume on ws/chat: backlog after last_seq, snapshot when trimmed, finished turns whole, no gap, no duplicate."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from assistant.tests.support import ChatSocket, chat_frame, new_client_id, text_of, wait_for
from runtime.models import Turn

pytestmark = pytest.mark.django_db(transaction=True)


async def connected(token, client_id, **auth) -> ChatSocket:
    ws = await ChatSocket(client_id).open()
    await ws.auth(token, **auth)
    return ws


def stream_frames(frames):
    return [f for f in frames if f["type"] not in ("ready", "pong")]


async def test_disconnect_after_seq_20_and_resume_gets_exactly_21_to_n(member_token, fake_llm):
    fake_llm.config.reply = " ".join(f"단어{i}" for i in range(120))
    fake_llm.config.tokens_per_second = 60
    client_id = new_client_id()
    ws = await connected(member_token, client_id)
    await ws.send(chat_frame("길게"))
    while (await ws.recv())["seq"] < 20:
        pass
    seen = list(ws.frames)
    await ws.close()
    back = await connected(member_token, client_id, last_seq=20)
    end = await back.until("end")
    after = stream_frames(back.frames)
    assert [f["seq"] for f in after] == list(range(21, end["seq"] + 1))
    assert [f["type"] for f in after].count("end") == 1
    whole = [f for f in stream_frames(seen) if f["seq"] <= 20] + after
    turn = await sync_to_async(Turn.objects.get)(pk=end["turn_id"])
    assert text_of(whole) == turn.reply_text
    await back.close()


async def test_three_reconnects_during_one_answer_no_gap_no_duplicate(member_token, fake_llm):
    fake_llm.config.reply = " ".join(f"w{i}" for i in range(150))
    fake_llm.config.tokens_per_second = 80
    client_id = new_client_id()
    ws = await connected(member_token, client_id)
    await ws.send(chat_frame("계속 말해"))
    received: list[dict] = []
    last = 0
    for _ in range(3):
        target = last + 4
        while True:
            frame = await ws.recv()
            if frame["type"] in ("ready", "pong"):
                continue
            received.append(frame)
            last = frame["seq"]
            if last >= target:
                break
        await ws.close()
        ws = await ChatSocket(client_id).open()
        await ws.send({"type": "auth", "token": member_token})
        await ws.until("ready")
        await ws.send({"type": "resume", "last_seq": last})
    end = await ws.until("end")
    received += [f for f in stream_frames(ws.frames)]
    seqs = [f["seq"] for f in received]
    assert seqs == list(range(1, end["seq"] + 1)), "every seq exactly once, in order"
    turn = await sync_to_async(Turn.objects.get)(pk=end["turn_id"])
    assert text_of(received) == turn.reply_text
    await ws.close()


async def test_come_back_after_the_answer_finished_gets_it_whole(member_token, fake_llm):
    fake_llm.config.reply = " ".join(f"조각{i}" for i in range(60))
    fake_llm.config.tokens_per_second = 200
    client_id = new_client_id()
    ws = await connected(member_token, client_id)
    await ws.send(chat_frame("끝나면 알려줘"))
    queued = await ws.until("queued")
    await ws.close()
    await wait_for(lambda: Turn.objects.filter(pk=queued["turn_id"], status=Turn.Status.COMPLETED).aexists())
    back = await connected(member_token, client_id, last_seq=queued["seq"])
    end = await back.until("end")
    frames = stream_frames(back.frames)
    assert [f["type"] for f in frames] == ["start", "response", "end"]
    turn = await sync_to_async(Turn.objects.get)(pk=queued["turn_id"])
    assert frames[1]["content"] == turn.reply_text and end["turn_id"] == str(turn.pk)
    assert [f["seq"] for f in frames] == sorted(f["seq"] for f in frames)
    assert await back.quiet()
    await back.close()


async def test_trimmed_backlog_gets_a_snapshot_then_live(member_token, fake_llm, settings):
    settings.ASSISTANT_BACKLOG_FRAMES = 10
    settings.ASSISTANT_COALESCE_MS = 0
    fake_llm.config.reply = " ".join(f"t{i}" for i in range(200))
    fake_llm.config.tokens_per_second = 50
    client_id = new_client_id()
    ws = await connected(member_token, client_id)
    await ws.send(chat_frame("오래 말해"))
    first = await ws.until("response")
    while (await ws.recv())["seq"] < first["seq"] + 25:
        pass
    await ws.close()
    back = await connected(member_token, client_id, last_seq=first["seq"])
    snapshot = await back.until("snapshot")
    assert snapshot["turn_id"] == first["turn_id"] and snapshot["status"] == "streaming"
    assert snapshot["content"].startswith("t0 t1") and snapshot["turns"][-1]["message"] == "오래 말해"
    end = await back.until("end")
    live = [f for f in back.frames if f["type"] == "response"]
    assert all(f["seq"] > snapshot["seq"] for f in live)
    turn = await sync_to_async(Turn.objects.get)(pk=end["turn_id"])
    assert snapshot["content"] + text_of(live) == turn.reply_text
    await back.close()


async def test_a_client_that_stops_reading_gets_everything(member_token, fake_llm):
    """The socket is not read for a while (the frames queue up): coalesced, nothing lost, text as stored."""
    fake_llm.config.reply = " ".join(f"x{i}" for i in range(500))
    fake_llm.config.tokens_per_second = 0
    ws = await connected(member_token, new_client_id())
    await ws.send(chat_frame("많이"))
    queued = await ws.until("queued")
    await wait_for(lambda: Turn.objects.filter(pk=queued["turn_id"], status=Turn.Status.COMPLETED).aexists())
    end = await ws.until("end")
    turn = await sync_to_async(Turn.objects.get)(pk=end["turn_id"])
    assert text_of(ws.of_turn(turn.pk)) == turn.reply_text
    seqs = [f["seq"] for f in stream_frames(ws.frames)]
    assert seqs == list(range(seqs[0], seqs[-1] + 1))
    await ws.close()


async def test_resume_with_bad_last_seq_is_an_error_and_the_socket_stays(member_token):
    ws = await connected(member_token, new_client_id())
    for bad in (-1, "3", None, True, 1.5):
        await ws.send({"type": "resume", "last_seq": bad})
        error = await ws.until("error")
        assert error["code"] == "invalid" and error["field"] == "last_seq"
    await ws.send({"type": "resume", "last_seq": 999})  # never had: a snapshot of nothing
    snapshot = await ws.until("snapshot")
    assert snapshot["turn_id"] is None and snapshot["turns"] == []
    await ws.close()


async def test_stop_after_a_reconnect(member_token, fake_llm):
    fake_llm.config.reply = " ".join(f"s{i}" for i in range(400))
    fake_llm.config.tokens_per_second = 50
    client_id = new_client_id()
    ws = await connected(member_token, client_id)
    await ws.send(chat_frame("멈춰 봐"))
    response = await ws.until("response")
    await ws.close()
    back = await connected(member_token, client_id, last_seq=response["seq"])
    await back.send({"type": "stop"})
    end = await back.until("end")
    assert end["stopped"] is True
    turn = await sync_to_async(Turn.objects.get)(pk=end["turn_id"])
    assert turn.is_finished and turn.reply_text
    await back.close()
