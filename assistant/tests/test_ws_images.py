"""Images on ws/chat: count, decoded size and sniffed type checked; stored with the turn; sent to the
model as image parts; the offline provider says it cannot see them; oversized frames get an error."""

from __future__ import annotations

import base64

import pytest
from asgiref.sync import sync_to_async

from assistant.models import TurnImage
from assistant.tests.support import ChatSocket, chat_frame, new_client_id, text_of
from runtime.models import Turn

pytestmark = pytest.mark.django_db(transaction=True)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
GIF = b"GIF89a" + b"\x00" * 32


def data_url(data: bytes, claimed: str = "image/png") -> str:
    return f"data:{claimed};base64," + base64.b64encode(data).decode()


async def connected(token) -> ChatSocket:
    ws = await ChatSocket(new_client_id()).open()
    await ws.auth(token)
    return ws


async def assert_refused(ws, frame, code, fake_llm):
    await ws.send(frame)
    error = await ws.until("error")
    assert error["code"] == code and error["field"] == "images" and "(" in error["message"]
    await ws.send({"type": "ping"})
    await ws.until("pong")  # the socket is still open
    assert await sync_to_async(Turn.objects.count)() == 0 and fake_llm.requests == []
    return error


async def test_bad_images_get_an_error_frame_and_nothing_is_stored(member_token, fake_llm):
    ws = await connected(member_token)
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * (6 * 1000 * 1000)
    await assert_refused(ws, chat_frame("6 MB", images=[data_url(big)]), "image_too_large", fake_llm)
    error = await assert_refused(ws, chat_frame("text as png", images=[data_url(b"hello, not an image")]),
                                 "image_type", fake_llm)
    assert error["index"] == 0
    await assert_refused(ws, chat_frame("svg", images=[data_url(b"<svg xmlns='http://www.w3.org/2000/svg'/>",
                                                                "image/svg+xml")]), "image_type", fake_llm)
    await assert_refused(ws, chat_frame("20", images=[data_url(PNG)] * 20), "too_many_images", fake_llm)
    for bad in (["http://example.com/a.png"], ["javascript:alert(1)"], [5], "data:...", ["data:image/png,raw"],
                ["data:image/png;base64,@@@@"]):
        await assert_refused(ws, chat_frame("bad", images=bad), "invalid" if bad == "data:..." else "image_invalid",
                             fake_llm)
    await ws.close()


async def test_images_are_stored_and_sent_as_image_parts(member_token, fake_llm):
    fake_llm.config.reply = "두 장 모두 봤어요"
    ws = await connected(member_token)
    url = "https://images.example.com/cat.webp"
    # The claimed type is ignored: the bytes are a GIF.
    await ws.send(chat_frame("이 그림들 뭐야?", images=[data_url(PNG), data_url(GIF, "image/png"), url]))
    end = await ws.until("end")
    stored = await sync_to_async(list)(TurnImage.objects.filter(turn_id=end["turn_id"]).order_by("position"))
    assert [(i.content_type, i.size, i.url) for i in stored] == [
        ("image/png", len(PNG), ""), ("image/gif", len(GIF), ""), ("", 0, url)]
    assert bytes(stored[0].data) == PNG
    content = fake_llm.requests[-1]["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "이 그림들 뭐야?"}
    assert [p["image_url"]["url"] for p in content[1:]] == [data_url(PNG), data_url(GIF, "image/gif"), url]
    await ws.close()


async def test_the_offline_provider_says_it_cannot_see_images(member_token, offline_llm):
    ws = await connected(member_token)
    await ws.send(chat_frame("이 사진 봐 줘", images=[data_url(PNG)]))
    end = await ws.until("end")
    text = text_of(ws.of_turn(end["turn_id"]))
    assert "이미지" in text and "볼 수 없어요" in text
    await ws.close()


async def test_a_frame_over_the_limit_gets_an_error_and_the_socket_stays(member_token, settings, fake_llm):
    settings.ASSISTANT_MAX_FRAME_BYTES = 100 * 1024
    ws = await connected(member_token)
    await ws.send(chat_frame("x" * 10, images=[data_url(b"\x89PNG\r\n\x1a\n" + b"\x00" * 120_000)]))
    error = await ws.until("error")
    assert error["code"] == "frame_too_large" and error["limit_bytes"] == 100 * 1024
    await ws.send(chat_frame("작은 메시지"))
    await ws.until("end")
    assert await sync_to_async(Turn.objects.count)() == 1
    await ws.close()
