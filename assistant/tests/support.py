"""Helpers for the assistant tests: members with tokens, a socket client that reads frames by seq."""

from __future__ import annotations

import asyncio
import itertools
import uuid

from channels.testing import WebsocketCommunicator

_ids = itertools.count(1)


def member_make(organization, username: str | None = None, *, is_staff=True):
    from django.contrib.auth import get_user_model

    from runtime.models import Membership

    user = get_user_model().objects.create_user(username=username or f"member{next(_ids)}", password="pw-123456",
                                                is_staff=is_staff)
    Membership.objects.create(user=user, organization=organization)
    return user


def access_token(user) -> str:
    from rest_framework_simplejwt.tokens import AccessToken

    return str(AccessToken.for_user(user))


def new_client_id() -> str:
    # Random: the Redis backlog outlives a test run, and a reused id would continue an old seq.
    return f"client-{uuid.uuid4().hex[:16]}"


class ChatSocket:
    """A WebsocketCommunicator on /ws/chat/{client_id} that keeps the frames it read."""

    def __init__(self, client_id: str, *, origin: str | None = None, user=None, query: str = ""):
        from mejai.asgi import application

        headers = [(b"host", b"testserver")]
        if origin:
            headers.append((b"origin", origin.encode()))
        path = f"/ws/chat/{client_id}" + (f"?{query}" if query else "")
        self.comm = WebsocketCommunicator(application, path, headers=headers)
        if user is not None:
            self.comm.scope["user"] = user  # as the session middleware would set it
        self.frames: list[dict] = []
        self.client_id = client_id

    async def open(self) -> ChatSocket:
        connected, _ = await self.comm.connect()
        assert connected
        return self

    async def auth(self, token: str, **extra) -> dict:
        await self.send({"type": "auth", "token": token, **extra})
        return await self.until("ready")

    async def send(self, frame) -> None:
        if isinstance(frame, str):
            await self.comm.send_to(text_data=frame)
        else:
            await self.comm.send_json_to(frame)

    async def recv(self, timeout: float = 10) -> dict:
        frame = await self.comm.receive_json_from(timeout=timeout)
        self.frames.append(frame)
        return frame

    async def until(self, kind: str, *, timeout: float = 15, **match) -> dict:
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
                return frame

    async def quiet(self, timeout: float = 0.3) -> bool:
        return await self.comm.receive_nothing(timeout=timeout)

    async def close(self) -> None:
        await self.comm.disconnect()

    def of_turn(self, turn_id) -> list[dict]:
        return [f for f in self.frames if f.get("turn_id") == str(turn_id)]


def chat_frame(message: str, *, project="acme", agent="support", **extra) -> dict:
    return {"type": "chat", "message": message, "project_id": project, "agent_name": agent, **extra}


def text_of(frames: list[dict]) -> str:
    return "".join(f["content"] for f in frames if f["type"] == "response")


async def wait_for(predicate, timeout: float = 15):
    """Poll an async/sync predicate until truthy (state, never time, decides)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)
