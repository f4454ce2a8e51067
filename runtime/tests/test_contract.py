"""The pipeline's contract, tested on the runtime itself (not through a channel's HTTP API):
event order and version, replay, cancellation, background answers, live events across processes,
and commands per channel."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from runtime import background, commands, live
from runtime.events import EVENTS_VERSION, LIVE_MESSAGE_TYPE, event_delta, live_envelope, live_envelope_event
from runtime.models import Channel, Turn
from runtime.services import outcome_gather, turn_answer_stream, turn_replay_events, turn_run, turn_start

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def _store(organization, agent, text="안녕하세요", channel=Channel.API, **kwargs):
    turn, _ = turn_start(organization=organization, agent=agent, channel=channel, text=text, **kwargs)
    return turn


async def _collect(events):
    return [event async for event in events]


def test_events_come_in_order_with_the_version(organization, agent, fake_llm):
    fake_llm.config.reply = "하나 둘 셋"
    turn = _store(organization, agent)
    events = asyncio.run(_collect(turn_answer_stream(turn=turn)))
    kinds = [e.type for e in events]
    assert kinds[0] == "start" and kinds[-1] == "message" and set(kinds[1:-1]) == {"delta"}
    assert all(e.as_dict()["v"] == EVENTS_VERSION for e in events)
    assert events[0].data["seq"] == turn.seq and events[0].data["replayed"] is False
    assert [e.data["index"] for e in events[1:-1]] == list(range(len(events) - 2))
    assert "".join(e.data["text"] for e in events[1:-1]) == events[-1].data["message"] == "하나 둘 셋"


def test_a_finished_turn_is_replayed_without_a_second_model_call(organization, agent, fake_llm):
    turn = _store(organization, agent)
    first = asyncio.run(outcome_gather(turn_answer_stream(turn=turn)))
    calls = len(fake_llm.requests)
    again = asyncio.run(_collect(turn_answer_stream(turn=Turn.objects.get(pk=turn.pk))))
    assert len(fake_llm.requests) == calls
    assert [e.type for e in again] == ["start", "message"] and again[0].data["replayed"] is True
    assert again[1].data == first.payload
    replay = turn_replay_events(Turn.objects.select_related("session").get(pk=turn.pk))
    assert [e.type for e in replay] == ["start", "message"] and replay[1].data["message"] == first.payload["message"]


def test_a_failed_turn_replays_its_error(organization, agent, fake_llm):
    fake_llm.config.fail_status = 500
    fake_llm.config.fail_times = 10
    turn = _store(organization, agent)
    asyncio.run(outcome_gather(turn_answer_stream(turn=turn)))
    replay = turn_replay_events(Turn.objects.select_related("session").get(pk=turn.pk))
    assert [e.type for e in replay] == ["start", "error"]
    assert replay[1].data["code"] and replay[1].data["turn_id"] == str(turn.pk)


def test_cancelling_the_stream_keeps_the_partial_text(organization, agent, fake_llm):
    fake_llm.config.reply = " ".join(["단어"] * 30)
    fake_llm.config.tokens_per_second = 20
    turn = _store(organization, agent)

    async def run():
        seen = []

        async def consume():
            async for event in turn_answer_stream(turn=turn):
                seen.append(event)

        task = asyncio.ensure_future(consume())
        while sum(e.type == "delta" for e in seen) < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return seen

    seen = asyncio.run(run())
    stored = Turn.objects.get(pk=turn.pk)
    assert stored.status == Turn.Status.INTERRUPTED and stored.error_code == "client_disconnected"
    assert stored.reply_text.startswith("".join(e.data["text"] for e in seen if e.type == "delta"))


def test_the_envelope_round_trips():
    event = event_delta(turn_id="t", text="안녕", index=0)
    message = live_envelope(event, group="g", session_id="6f1c1f0e-7a53-4fc1-9f44-1c3f0c2f7d0a", seq=3, n=2,
                            sender="me")
    assert message["type"] == LIVE_MESSAGE_TYPE and message["v"] == 1 and message["id"] == "3.2"
    assert live_envelope_event(message) == event
    assert live_envelope_event({**message, "v": 2}) is None
    assert live_envelope_event({"type": "something.else"}) is None


def test_background_answer_is_published_live_and_its_followers_see_it_whole(organization, agent, fake_llm):
    fake_llm.config.reply = "배경 답변"
    turn = _store(organization, agent)

    async def run():
        stream = live.session_events_stream(session_id=turn.session_id)
        assert await stream.__anext__() == (None, None)  # subscribed first
        followed = await _collect(background.turn_answer_follow(turn_id=turn.pk))
        received = []
        while not received or received[-1][1].type != "message":
            received.append(await asyncio.wait_for(stream.__anext__(), 10))
        await stream.aclose()
        return followed, received

    followed, received = asyncio.run(run())
    assert [e.type for e in followed][-1] == "message" and followed[-1].data["message"] == "배경 답변"
    assert [e.type for _, e in received] == [e.type for e in followed]
    assert received[-1][0] == str(turn.seq) and received[0][0] == f"{turn.seq}.1"
    assert received[0][1].data["user_text"] == "안녕하세요"


def test_an_answer_outlives_its_follower(organization, agent, fake_llm):
    fake_llm.config.reply = " ".join(["계속"] * 20)
    fake_llm.config.tokens_per_second = 40
    turn = _store(organization, agent)

    async def run():
        async for event in background.turn_answer_follow(turn_id=turn.pk):
            if event.type == "delta":
                break  # the follower leaves
        return await asyncio.wrap_future(background.turn_answer_background(turn_id=turn.pk))

    outcome = asyncio.run(run())
    assert outcome.ok and outcome.payload["message"] == fake_llm.config.reply
    assert Turn.objects.get(pk=turn.pk).status == Turn.Status.COMPLETED


def test_answer_within_a_budget_then_in_the_background(organization, agent, fake_llm):
    fake_llm.config.ttft = 1.0
    turn = _store(organization, agent)
    assert background.turn_answer_within(turn_id=turn.pk, seconds=0.05) is None  # not yet, and it goes on
    outcome = background.turn_answer_background(turn_id=turn.pk).result(timeout=20)
    assert outcome.ok and Turn.objects.get(pk=turn.pk).status == Turn.Status.COMPLETED
    assert len([r for r in fake_llm.requests if r["messages"][-1]["content"] == "안녕하세요"]) == 1


def test_cancel_stops_the_answer_and_publishes_one_terminal_event(organization, agent, fake_llm):
    fake_llm.config.reply = " ".join(["멈춰"] * 100)
    fake_llm.config.tokens_per_second = 20
    turn = _store(organization, agent)

    async def run():
        stream = live.session_events_stream(session_id=turn.session_id)
        await stream.__anext__()
        future = background.turn_answer_background(turn_id=turn.pk)
        received = []
        while True:
            _, event = await asyncio.wait_for(stream.__anext__(), 10)
            received.append(event)
            if event.type == "delta":
                await sync_to_async(background.turn_cancel)(turn_id=turn.pk)
            if event.type in ("message", "error"):
                break
        outcome = await asyncio.wrap_future(future)
        await asyncio.sleep(0.3)  # nothing else may follow the terminal event
        extra = []
        try:
            extra.append(await asyncio.wait_for(stream.__anext__(), 0.2))
        except TimeoutError:
            pass
        await stream.aclose()
        return received, outcome, extra

    received, outcome, extra = asyncio.run(run())
    assert received[-1].type == "error" and received[-1].data["code"] == "stopped"
    assert not outcome.ok and outcome.error["code"] == "stopped"
    assert extra == []
    stored = Turn.objects.get(pk=turn.pk)
    assert stored.status == Turn.Status.INTERRUPTED and stored.error_code == "stopped" and stored.reply_text


@pytest.mark.postgres
@pytest.mark.redis
def test_a_background_answer_in_another_process_reaches_this_one(organization, agent, fake_llm, settings):
    """Two processes on the Redis channel layer: one answers in the background, this one listens."""
    from django.db import connection

    fake_llm.config.reply = "다른 프로세스의 답변"
    turn = _store(organization, agent)
    db = settings.DATABASES["default"]
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="mejai.test_settings",
               DATABASE_URL=f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:"
                            f"{db['PORT'] or 5432}/{connection.settings_dict['NAME']}",
               OPENAI_BASE_URL=settings.OPENAI_BASE_URL, OPENAI_API_KEY=settings.OPENAI_API_KEY)
    script = textwrap.dedent(f"""
        import django
        django.setup()
        from runtime.background import turn_answer_background
        outcome = turn_answer_background(turn_id="{turn.pk}").result(timeout=30)
        print("OK" if outcome.ok else outcome.error)
    """)

    async def run():
        stream = live.session_events_stream(session_id=turn.session_id)
        assert await stream.__anext__() == (None, None)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=ROOT, env=env,
                                                    stdout=asyncio.subprocess.PIPE)
        received = []
        while not received or received[-1][1].type not in ("message", "error"):
            received.append(await asyncio.wait_for(stream.__anext__(), 30))
        out, _ = await proc.communicate()
        await stream.aclose()
        return received, out.decode()

    received, out = asyncio.run(run())
    assert out.strip() == "OK"
    assert received[0][1].type == "start" and received[-1][1].type == "message"
    assert received[-1][1].data["message"] == "다른 프로세스의 답변"


def test_commands_are_offered_per_channel(organization, agent, offline_llm):
    api = turn_run(organization=organization, agent=agent, channel=Channel.API, text="/답변")
    assert api.ok and Turn.objects.get(pk=api.turn_id).handled_by != "command:답변"  # not a command here
    kakao = turn_run(organization=organization, agent=agent, channel=Channel.KAKAO, text="/답변")
    assert Turn.objects.get(pk=kakao.turn_id).handled_by == "command:답변"
    assert commands.command_match("/답변", channel=Channel.API) is None
    assert commands.command_match("/답변", channel=Channel.KAKAO)[0].name == "답변"
    # /이름: Kakao's own flow on Kakao, the end-user command everywhere else
    assert commands.command_match("/이름", channel=Channel.KAKAO)[0].channels == frozenset({Channel.KAKAO})
    assert commands.command_match("/이름 민수", channel=Channel.WEB_WIDGET)[0].channels is None


def test_help_lists_what_the_channel_offers_in_the_sessions_language(organization, agent, offline_llm):
    kakao = turn_run(organization=organization, agent=agent, channel=Channel.KAKAO, text="/도움말")
    widget = turn_run(organization=organization, agent=agent, channel=Channel.WEB_WIDGET, text="/도움말",
                      session_metadata={"locale": "en"})
    assert "/답변" in kakao.payload["message"] and kakao.payload["message"].startswith("사용할 수 있는 명령어")
    assert "/답변" not in widget.payload["message"] and "/answer" not in widget.payload["message"]
    assert widget.payload["message"].startswith("Commands you can use")
    korean = turn_run(organization=organization, agent=agent, channel=Channel.API, text="/help",
                      session_metadata={"locale": "ko"})
    assert korean.payload["message"].startswith("사용할 수 있는 명령어")


@pytest.mark.postgres
def test_background_answers_give_their_connections_back(organization, agent, fake_llm, settings):
    """Each background answer has a database thread of its own; its pooled connection must go back to
    the pool when it ends, or a process stops answering once the pool is spent (regression)."""
    from django.db import connection

    pool_max = connection.settings_dict["OPTIONS"]["pool"]["max_size"]
    for n in range(pool_max + 5):
        turn = _store(organization, agent, text=f"질문 {n}")
        outcome = background.turn_answer_background(turn_id=turn.pk).result(timeout=60)
        assert outcome.ok, (n, outcome.error)
