"""The channel-neutral turn event contract (version 1), its cross-process envelope and its SSE encoding.

Every channel maps these to its own wire format; see docs/runtime.md ("Events").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

EVENTS_VERSION = 1


@dataclass(frozen=True, slots=True)
class TurnEvent:
    type: str  # start | delta | message | error
    data: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"type": self.type, "v": EVENTS_VERSION, **self.data}


def event_start(*, session_id, turn_id, seq: int, replayed: bool = False) -> TurnEvent:
    return TurnEvent("start", {"session_id": str(session_id), "turn_id": str(turn_id), "seq": seq, "replayed": replayed})


def event_delta(*, turn_id, text: str, index: int) -> TurnEvent:
    return TurnEvent("delta", {"turn_id": str(turn_id), "text": text, "index": index})


def event_message(payload: dict) -> TurnEvent:
    return TurnEvent("message", payload)


def event_error(*, code: str, message: str, session_id=None, turn_id=None, retryable: bool = False) -> TurnEvent:
    return TurnEvent(
        "error",
        {
            "code": code,
            "message": message,
            "session_id": str(session_id) if session_id else None,
            "turn_id": str(turn_id) if turn_id else None,
            "retryable": retryable,
        },
    )


# --- the envelope of an event crossing processes (channel layer) ----------------------------------

LIVE_MESSAGE_TYPE = "runtime.turn_event"  # a Channels consumer in a group gets it as runtime_turn_event()
LIVE_ENVELOPE_VERSION = 1


def event_id_for(event: TurnEvent, seq: int, n: int) -> str:
    """Stream ids: `<seq>` for a finished turn's `message` or `error`, `<seq>.<n>` before that."""
    return str(seq) if event.type in ("message", "error") else f"{seq}.{n}"


def live_envelope(event: TurnEvent, *, group: str, session_id, seq: int, n: int, sender: str = "",
                  user_text: str = "") -> dict:
    """The channel-layer message carrying one event of turn `seq` of a session (version 1).

    Keys: type ("runtime.turn_event"), v (1), group, session_id, seq (the turn's), id (stream id,
    see event_id_for), event_type, data (TurnEvent.as_dict(), plus `user_text` on `start` so other
    tabs can show what was sent), sender (the publisher's channel name or label, "" when none).
    """
    data = event.as_dict()
    if event.type == "start" and user_text:
        data["user_text"] = user_text
    return {"type": LIVE_MESSAGE_TYPE, "v": LIVE_ENVELOPE_VERSION, "group": group, "session_id": str(session_id),
            "seq": seq, "id": event_id_for(event, seq, n), "event_type": event.type, "data": data, "sender": sender}


def live_envelope_event(message: dict) -> TurnEvent | None:
    """The TurnEvent inside an envelope; None for a message that is not a version-1 envelope."""
    if message.get("type") != LIVE_MESSAGE_TYPE or message.get("v", LIVE_ENVELOPE_VERSION) != LIVE_ENVELOPE_VERSION:
        return None
    data = dict(message.get("data") or {})
    data.pop("type", None)
    data.pop("v", None)
    return TurnEvent(str(message.get("event_type") or ""), data)


def sse_encode(event: TurnEvent, *, event_id: str | int | None = None) -> str:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event.type}")
    lines.append("data: " + json.dumps(event.as_dict(), ensure_ascii=False, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


SSE_KEEPALIVE = ": keep-alive\n\n"
