"""The fake Mattermost server speaks the protocol of MATTERMOST.md (so the worker's tests mean something)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from mchat.fakes.server import EDIT_TIME_LIMIT_ERROR, FakeConfig, FakeMattermost, demo_world


@pytest.fixture
def fake():
    server = FakeMattermost().start()
    yield server
    server.stop()


@pytest.fixture
def world(fake):
    return demo_world(fake)


def api(fake, token="fake-bot-token"):
    return httpx.Client(base_url=fake.url + "/api/v4", headers={"Authorization": f"Bearer {token}"}, timeout=5)


def ws_url(fake, **query):
    suffix = "&".join(f"{k}={v}" for k, v in query.items())
    return fake.url.replace("http", "ws") + "/api/v4/websocket" + (f"?{suffix}" if suffix else "")


async def recv_json(ws, timeout=5.0):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def test_rest_basics(fake, world):
    with api(fake) as client:
        me = client.get("/users/me").json()
        assert me["id"] == world["bot"]["id"] and me["is_bot"]
        created = client.post("/posts", json={"channel_id": world["town"]["id"], "message": "hi", "props": {"x": "1"}})
        assert created.status_code == 201
        post = created.json()
        assert post["props"] == {"x": "1", "from_bot": "true"}
        patched = client.put(f"/posts/{post['id']}/patch", json={"message": "hello", "props": {"y": "2"}}).json()
        assert patched["message"] == "hello" and patched["props"] == {"y": "2", "from_bot": "true"}  # replaced whole
        since = client.get(f"/channels/{world['town']['id']}/posts", params={"since": post["create_at"] - 1}).json()
        assert since["order"] == [post["id"]]
        assert client.post("/posts", json={"channel_id": world["town"]["id"], "message": "x" * 16384}).status_code == 400
        assert client.post("/posts", json={"channel_id": world["town"]["id"], "message": "가" * 16383}).status_code == 201
        typing = client.post(f"/users/{me['id']}/typing", json={"channel_id": world["town"]["id"], "parent_id": ""})
        assert typing.status_code == 200 and fake.typing_log
        users = client.post("/users/ids", json=[world["minsu"]["id"]]).json()
        assert users[0]["email_verified"] is True
    with api(fake, token="wrong") as client:
        assert client.get("/users/me").status_code == 401


def test_thread_order_has_duplicates_and_is_shuffled(fake, world):
    root = fake.user_post(world["minsu"], world["town"], "root")
    for i in range(5):
        fake.user_post(world["jisu"], world["town"], f"reply {i}", root_id=root["id"])
    with api(fake) as client:
        thread = client.get(f"/posts/{root['id']}/thread").json()
    assert len(thread["order"]) == 7 and len(set(thread["order"])) == 6


def test_edit_time_limit_rate_limit_and_faults(fake, world):
    fake.config.edit_time_limit = 0.2
    with api(fake) as client:
        post = client.post("/posts", json={"channel_id": world["town"]["id"], "message": "a"}).json()
        time.sleep(0.3)
        late = client.put(f"/posts/{post['id']}/patch", json={"message": "b"})
        assert late.status_code == 400 and late.json()["id"] == EDIT_TIME_LIMIT_ERROR

        fake.fault_add("PUT", r"/api/v4/posts/[^/]+/patch", status=429, body="limit exceeded",
                       headers={"Retry-After": "2"}, every=5, times=0)
        fake.config.edit_time_limit = None
        statuses = [client.put(f"/posts/{post['id']}/patch", json={"message": str(i)}).status_code for i in range(10)]
        assert statuses == [200, 200, 200, 200, 429] * 2
        fake.faults_clear()

        fake.config.rate_limit, fake.config.rate_per_second, fake.config.rate_burst = True, 1, 2
        answers = [client.get("/users/me") for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[0].headers["X-RateLimit-Limit"] == "1"
        assert answers[2].text == "limit exceeded" and int(answers[2].headers["Retry-After"]) >= 1
        fake.config.rate_limit = False

        fake.fault_add("POST", "/api/v4/posts", status=503)
        assert client.post("/posts", json={"channel_id": world["town"]["id"], "message": "c"}).status_code == 503
        fake.fault_add("POST", "/api/v4/posts", action="lose_response")
        with pytest.raises(httpx.HTTPError):
            client.post("/posts", json={"channel_id": world["town"]["id"], "message": "lost", "pending_post_id": "p1"})
    with api(fake) as client:
        again = client.post("/posts", json={"channel_id": world["town"]["id"], "message": "lost", "pending_post_id": "p1"})
        assert again.status_code == 201
    assert len([p for p in fake.posts_by(world["bot"]) if p["message"] == "lost"]) == 1  # pending_post_id de-duplicated


async def test_hello_seq_ping_typing_and_resume(fake, world):
    headers = {"Authorization": "Bearer fake-bot-token"}
    async with connect(ws_url(fake), additional_headers=headers) as ws:
        hello = await recv_json(ws)
        assert hello["event"] == "hello" and hello["seq"] == 0
        connection_id = hello["data"]["connection_id"]
        await ws.send(json.dumps({"seq": 1, "action": "ping"}))
        pong = await recv_json(ws)
        assert pong == {"status": "OK", "seq_reply": 1, "data": pong["data"]} and pong["data"]["text"] == "pong"
        await ws.send(json.dumps({"seq": 0, "action": "ping"}))
        assert (await recv_json(ws))["error"]["id"].endswith("bad_seq.app_error")
        await ws.send(json.dumps({"seq": 2, "action": "user_typing", "data": {"channel_id": world["town"]["id"]}}))
        assert (await recv_json(ws))["status"] == "OK"
        await asyncio.to_thread(fake.user_post, world["minsu"], world["town"], "@ai one")
        posted = await recv_json(ws)  # typing is not echoed to its sender
        assert posted["event"] == "posted" and posted["seq"] == 1 and isinstance(posted["data"]["post"], str)
        assert json.loads(posted["data"]["post"])["message"] == "@ai one"
        assert posted["data"]["channel_type"] == "O" and posted["broadcast"]["user_id"] == ""

    # Away: two posts are queued; a resume replays them without a hello.
    await asyncio.to_thread(fake.user_post, world["minsu"], world["town"], "@ai two")
    await asyncio.to_thread(fake.user_post, world["minsu"], world["town"], "@ai three")
    async with connect(ws_url(fake, connection_id=connection_id, sequence_number=2), additional_headers=headers) as ws:
        first, second = await recv_json(ws), await recv_json(ws)
        assert (first["event"], first["seq"], second["seq"]) == ("posted", 2, 3)

    # After a restart nothing survives: a new hello with another connection id, seq from 0.
    await asyncio.to_thread(fake.restart)
    async with connect(ws_url(fake, connection_id=connection_id, sequence_number=5), additional_headers=headers) as ws:
        hello = await recv_json(ws)
        assert hello["event"] == "hello" and hello["seq"] == 0 and hello["data"]["connection_id"] != connection_id

    # connection_id without sequence_number: closed.
    async with connect(ws_url(fake, connection_id=connection_id), additional_headers=headers) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)


async def test_upgrade_with_bad_token_is_401_and_challenge_auth_works(fake, world):
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(ws_url(fake), additional_headers={"Authorization": "Bearer nope"}):
            pass
    assert info.value.response.status_code == 401
    async with connect(ws_url(fake)) as ws:
        await ws.send(json.dumps({"seq": 1, "action": "authentication_challenge", "data": {"token": "fake-bot-token"}}))
        frames = [await recv_json(ws), await recv_json(ws)]
        assert frames[0]["event"] == "hello" and frames[1] == {"status": "OK", "seq_reply": 1}
    async with connect(ws_url(fake)) as ws:
        await ws.send(json.dumps({"seq": 1, "action": "authentication_challenge", "data": {"token": "bad"}}))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)


async def test_replay_limits_and_silent_cut(fake, world):
    fake.config.replay_queued = 3
    headers = {"Authorization": "Bearer fake-bot-token"}
    async with connect(ws_url(fake), additional_headers=headers) as ws:
        connection_id = (await recv_json(ws))["data"]["connection_id"]
    for i in range(5):  # more than can be queued: the resume fails with a new hello
        await asyncio.to_thread(fake.user_post, world["minsu"], world["town"], f"m{i}")
    async with connect(ws_url(fake, connection_id=connection_id, sequence_number=1), additional_headers=headers,
                       close_timeout=0.2) as ws:
        hello = await recv_json(ws)
        assert hello["event"] == "hello" and hello["data"]["connection_id"] != connection_id

        # A silent cut: no events, no replies to app pings, yet the socket stays open.
        await asyncio.to_thread(fake.ws_silent_cut)
        await asyncio.to_thread(fake.user_post, world["minsu"], world["town"], "lost in the cut")
        await ws.send(json.dumps({"seq": 1, "action": "ping"}))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)


async def test_server_pings_are_answered_by_the_client_library():
    server = FakeMattermost(config=FakeConfig(ping_interval=0.2, pong_timeout=0.6)).start()
    try:
        demo_world(server)
        headers = {"Authorization": "Bearer fake-bot-token"}
        # With automatic Pongs the connection lives on past the deadline.
        async with connect(ws_url(server), additional_headers=headers) as ws:
            await recv_json(ws)
            await asyncio.sleep(1.0)
            await ws.send(json.dumps({"seq": 1, "action": "ping"}))
            assert (await recv_json(ws))["seq_reply"] == 1
    finally:
        server.stop()
