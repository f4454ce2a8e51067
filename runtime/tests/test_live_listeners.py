"""runtime.live publishes a session's events only when someone listens (runtime/live.py, _ListenerCheck).

Run on whatever channel layer the settings give: the in-memory one by default, Redis under
MEJAI_REQUIRE_SERVICES=1 (there the count of listeners comes from Redis, so any process's listener counts).
"""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from runtime import live
from runtime.events import LIVE_MESSAGE_TYPE, event_delta, event_message, event_start


def _turn_events(session_id, turn_id, deltas: int):
    events = [event_start(session_id=session_id, turn_id=turn_id, seq=1)]
    events += [event_delta(turn_id=turn_id, text=f"w{i} ", index=i) for i in range(deltas)]
    events.append(event_message({"type": "message", "session_id": str(session_id), "turn_id": str(turn_id),
                                 "message": "".join(f"w{i} " for i in range(deltas)).strip()}))
    return events


async def _source(events, before=None):
    for n, event in enumerate(events):
        if before is not None:
            await before(n)
        yield event


async def _drain(layer, channel) -> list[dict]:
    import asyncio

    received = []
    while True:
        try:
            message = await asyncio.wait_for(layer.receive(channel), 0.5)
        except TimeoutError:
            return received
        if message.get("type") == LIVE_MESSAGE_TYPE:
            received.append(message)


@pytest.fixture
def counted_sends(monkeypatch):
    layer = get_channel_layer()
    sent: list[str] = []
    original = layer.group_send

    async def group_send(group, message):
        sent.append(group)
        return await original(group, message)

    monkeypatch.setattr(layer, "group_send", group_send)
    return layer, sent


def test_an_unheard_answer_publishes_nothing(counted_sends):
    layer, sent = counted_sends
    session_id, turn_id = uuid.uuid4(), uuid.uuid4()

    async def run():
        events = _turn_events(session_id, turn_id, 40)
        passed = [e async for e in live.events_publish(session_id=session_id, seq=1, events=_source(events))]
        assert [e.type for e in passed] == [e.type for e in events]  # the answer itself is untouched

    async_to_sync(run)()
    assert sent == []


def test_a_listener_gets_every_event_in_order(counted_sends):
    layer, sent = counted_sends
    session_id, turn_id = uuid.uuid4(), uuid.uuid4()
    group = live.session_group(session_id)

    async def run():
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        try:
            events = _turn_events(session_id, turn_id, 10)
            async for _ in live.events_publish(session_id=session_id, seq=1, events=_source(events)):
                pass
            return await _drain(layer, channel)
        finally:
            await layer.group_discard(group, channel)

    received = async_to_sync(run)()
    assert [m["event_type"] for m in received] == ["start", *["delta"] * 10, "message"]
    assert [m["data"]["index"] for m in received if m["event_type"] == "delta"] == list(range(10))


def test_a_listener_that_joins_mid_answer_gets_the_end(counted_sends, monkeypatch):
    """Deltas to a group found empty are skipped for a moment, but the terminal event is always
    looked up afresh: a listener that joined mid-answer gets it (and later deltas)."""
    layer, sent = counted_sends
    session_id, turn_id = uuid.uuid4(), uuid.uuid4()
    group = live.session_group(session_id)
    import asyncio

    checked = []
    original = live.group_has_listeners

    async def counting(layer_, group_):
        found = await original(layer_, group_)
        checked.append(found)
        return found

    monkeypatch.setattr(live, "group_has_listeners", counting)

    async def run():
        channel = await layer.new_channel()

        async def before(n):
            if n == 5:  # once the publisher found the group empty for `start`
                while not checked:
                    await asyncio.sleep(0)
                await layer.group_add(group, channel)

        try:
            events = _turn_events(session_id, turn_id, 10)
            async for _ in live.events_publish(session_id=session_id, seq=1, events=_source(events, before)):
                pass
            return await _drain(layer, channel)
        finally:
            await layer.group_discard(group, channel)

    received = async_to_sync(run)()
    kinds = [m["event_type"] for m in received]
    assert kinds[-1] == "message" and "start" not in kinds
    indexes = [m["data"]["index"] for m in received if m["event_type"] == "delta"]
    assert indexes == sorted(indexes) and checked[0] is False
    assert received[-1]["data"]["message"].startswith("w0 w1")
