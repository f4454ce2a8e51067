"""Answering on ws/chat: turns through the runtime, FIFO per client, coalesced deltas, one terminal frame,
the watchdog, stop, two tabs and idempotent ids."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from assistant.tests.support import ChatSocket, chat_frame, new_client_id, text_of, wait_for
from runtime.models import Channel, Turn

pytestmark = pytest.mark.django_db(transaction=True)


async def connected(token, client_id=None) -> ChatSocket:
    ws = await ChatSocket(client_id or new_client_id()).open()
    await ws.auth(token)
    return ws


def terminal(frames: list[dict], turn_id) -> list[dict]:
    return [f for f in frames if f.get("turn_id") == str(turn_id) and f["type"] in ("end", "error")]


async def test_chat_streams_start_responses_end_with_monotonic_seq(member_token, fake_llm):
    fake_llm.config.reply = "하나 둘 셋 넷 다섯"
    ws = await connected(member_token)
    await ws.send(chat_frame("세어 줘", id="m-1"))
    queued = await ws.until("queued")
    assert queued["id"] == "m-1" and queued["message"] == "세어 줘" and queued["position"] == 0
    end = await ws.until("end")
    turn_frames = ws.of_turn(queued["turn_id"])
    assert [f["type"] for f in turn_frames][0] == "queued" and turn_frames[1]["type"] == "start"
    assert text_of(turn_frames) == "하나 둘 셋 넷 다섯" and end["stopped"] is False
    seqs = [f["seq"] for f in ws.frames]
    assert seqs == sorted(seqs) and len(set(f["seq"] for f in turn_frames)) == len(turn_frames)
    turn = await sync_to_async(Turn.objects.select_related("session", "author").get)(pk=queued["turn_id"])
    assert turn.status == Turn.Status.COMPLETED and turn.reply_text == "하나 둘 셋 넷 다섯"
    assert turn.session.channel == Channel.ASSISTANT and turn.session.metadata["client_id"] == ws.client_id
    identities = await sync_to_async(lambda: list(turn.author.identities.values_list("kind", "verified")))()
    assert identities == [("account", True)]
    await ws.close()


async def test_deltas_are_coalesced_and_never_dropped(member_token, fake_llm, settings):
    settings.ASSISTANT_COALESCE_MS = 50
    words = [f"w{i}" for i in range(300)]
    fake_llm.config.reply = " ".join(words)
    ws = await connected(member_token)
    await ws.send(chat_frame("길게"))
    end = await ws.until("end")
    responses = [f for f in ws.of_turn(end["turn_id"]) if f["type"] == "response"]
    assert text_of(responses) == " ".join(words)
    assert len(responses) < len(words)  # unpaced tokens arrive faster than 50 ms apart: gathered
    await ws.close()


async def test_three_chats_at_once_are_answered_strictly_in_order(member_token, fake_llm):
    fake_llm.config.tokens_per_second = 200
    ws = await connected(member_token)
    for n in range(3):
        await ws.send(chat_frame(f"질문 {n}", id=f"q{n}"))
    ends = []
    while len(ends) < 3:
        ends.append(await ws.until("end"))
    order = [(f["type"], f.get("turn_id")) for f in ws.frames if f["type"] in ("start", "end")]
    turn_ids = [turn_id for kind, turn_id in order if kind == "start"]
    assert order == [x for t in turn_ids for x in (("start", t), ("end", t))]
    queued = {f["turn_id"]: f["id"] for f in ws.frames if f["type"] == "queued"}
    assert [queued[t] for t in turn_ids] == ["q0", "q1", "q2"]
    for turn_id in turn_ids:
        turn = await sync_to_async(Turn.objects.get)(pk=turn_id)
        assert text_of(ws.of_turn(turn_id)) == turn.reply_text and turn.status == Turn.Status.COMPLETED
    await ws.close()


async def test_the_same_id_twice_makes_one_turn(member_token, fake_llm):
    ws = await connected(member_token)
    await ws.send(chat_frame("한 번만", id="same"))
    first = await ws.until("end")
    await ws.send(chat_frame("한 번만", id="same"))
    again = await ws.until("queued")
    assert again["duplicate"] is True and again["turn_id"] == first["turn_id"]
    assert await sync_to_async(Turn.objects.count)() == 1
    assert await ws.quiet()
    await ws.close()


async def test_two_tabs_receive_the_same_frames_other_clients_nothing(member_token, fake_llm):
    fake_llm.config.reply = "두 탭 모두에게"
    client_id = new_client_id()
    tab1, tab2 = await connected(member_token, client_id), await connected(member_token, client_id)
    stranger = await connected(member_token)
    await tab1.send(chat_frame("안녕"))
    await tab1.until("end")
    await tab2.until("end")
    stream = lambda ws: [f for f in ws.frames if f["type"] not in ("ready", "pong")]  # noqa: E731
    assert stream(tab1) == stream(tab2) and text_of(stream(tab2)) == "두 탭 모두에게"
    assert await stranger.quiet()
    for ws in (tab1, tab2, stranger):
        await ws.close()


async def test_model_fails_after_50_tokens_one_error_nothing_restarted(member_token, fake_llm):
    fake_llm.config.reply = " ".join(f"t{i}" for i in range(80))
    fake_llm.config.cut_after_tokens = 50
    ws = await connected(member_token)
    await ws.send(chat_frame("끊겨라"))
    error = await ws.until("error")
    assert error["turn_id"] and error["code"].startswith("llm_")
    assert any("\uac00" <= ch <= "\ud7a3" for ch in error["message"])
    assert len(terminal(ws.frames, error["turn_id"])) == 1
    requests = len(fake_llm.requests)
    assert await ws.quiet(0.5)
    assert len(fake_llm.requests) == requests == 1
    turn = await sync_to_async(Turn.objects.get)(pk=error["turn_id"])
    assert turn.status == Turn.Status.FAILED and text_of(ws.of_turn(turn.id)) == turn.reply_text.strip()
    await ws.close()


async def test_watchdog_ends_a_silent_model_and_the_queue_continues(member_token, fake_llm, settings):
    settings.ASSISTANT_WATCHDOG_SECONDS = 0.5
    fake_llm.config.hang = True
    ws = await connected(member_token)
    await ws.send(chat_frame("응답 없음"))
    error = await ws.until("error")
    assert error["code"] == "model_stalled" and "응답하지 않아" in error["message"]
    fake_llm.config.hang = False
    fake_llm.config.reply = "이번엔 답해요"
    await ws.send(chat_frame("다시"))
    end = await ws.until("end")
    assert text_of(ws.of_turn(end["turn_id"])) == "이번엔 답해요"
    assert len(terminal(ws.frames, error["turn_id"])) == 1
    turn = await sync_to_async(Turn.objects.get)(pk=error["turn_id"])
    assert turn.is_finished
    await ws.close()


async def test_ping_is_answered_while_an_answer_streams(member_token, fake_llm):
    fake_llm.config.reply = " ".join(["느리게"] * 200)
    fake_llm.config.tokens_per_second = 20  # a 10 s answer
    ws = await connected(member_token)
    await ws.send(chat_frame("천천히"))
    await ws.until("response")
    await ws.send({"type": "ping"})
    pong = await ws.until("pong", timeout=1)
    assert pong["seq"] >= 1
    await ws.send({"type": "stop"})
    await ws.until("end")
    await ws.close()


async def test_stop_mid_stream_keeps_the_partial_and_the_queue_continues(member_token, fake_llm):
    fake_llm.config.reply = " ".join(f"조각{i}" for i in range(400))
    fake_llm.config.tokens_per_second = 50
    client_id = new_client_id()
    ws, other_tab = await connected(member_token, client_id), await connected(member_token, client_id)
    await ws.send(chat_frame("길게 말해", id="long"))
    await ws.send(chat_frame("다음 질문", id="next"))
    await ws.until("response")
    fake_llm.config.tokens_per_second = 0  # for the next request (the running stream keeps its pace)
    fake_llm.config.reply = "다음 답"
    await other_tab.send({"type": "stop"})  # from the second tab
    end = await ws.until("end")
    assert end["stopped"] is True
    turn = await sync_to_async(Turn.objects.get)(pk=end["turn_id"])
    partial = text_of(ws.of_turn(end["turn_id"]))
    assert turn.status == Turn.Status.INTERRUPTED and turn.error_code == "stopped"
    assert partial and turn.reply_text.startswith(partial.strip()[:20])
    following = await ws.until("end")
    assert following["turn_id"] != end["turn_id"] and text_of(ws.of_turn(following["turn_id"])) == "다음 답"
    await other_tab.send({"type": "stop"})
    assert (await other_tab.until("error"))["code"] == "nothing_to_stop"
    for sock in (ws, other_tab):
        await sock.close()


async def test_the_answer_continues_while_no_tab_is_connected(member_token, fake_llm):
    fake_llm.config.reply = " ".join(["계속"] * 30)
    fake_llm.config.tokens_per_second = 100
    ws = await connected(member_token)
    await ws.send(chat_frame("떠나도 답해"))
    queued = await ws.until("queued")
    await ws.close()
    await wait_for(lambda: Turn.objects.filter(pk=queued["turn_id"], status=Turn.Status.COMPLETED).aexists())
    turn = await sync_to_async(Turn.objects.get)(pk=queued["turn_id"])
    assert turn.reply_text == " ".join(["계속"] * 30)
    await asyncio.sleep(0)
