"""The /chat page in Chromium: streaming, reload mid-stream, a network cut and back, stop, two tabs.

mejai runs on a live ASGI server; the browser reaches it through a TCP relay on loopback that the
test can cut (every connection dropped, new ones refused) and restore, as a real network would.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from playwright.sync_api import expect

from assistant.tests.support import member_make
from runtime.models import Turn

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REPLY = ("**좋은 질문이에요.** 실시간 어시스턴트는 답변을 조각조각 보내고, 연결이 끊겨도 이어서 받습니다. "
         "자세한 설명은 [문서](https://docs.example.com/assistant) 를 보세요. `seq` 번호로 빠짐없이 순서대로 도착합니다.")


class Relay:
    """A TCP relay on loopback between the browser and the server, with a switch to cut the network."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                conn.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets |= {conn, upstream}
            threading.Thread(target=self._pump, args=(conn, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, conn), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        self.up = False
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.sockets.clear()

    def restore(self):
        self.up = True

    def close(self):
        self.cut()
        self.listener.close()


@pytest.fixture
def site(live_server_asgi, fake_llm, organization, agent):
    fake_llm.config.reply = REPLY
    fake_llm.config.tokens_per_second = 20
    relay = Relay(live_server_asgi.port)
    yield relay
    relay.close()


@pytest.fixture
def logged_in(browser, site, organization):
    """A browser context with a logged-in member's session cookie."""
    from django.test import Client

    user = member_make(organization, "chatuser")
    client = Client()
    client.force_login(user)
    contexts = []

    def make(viewport=None):
        ctx = browser.new_context(viewport=viewport or {"width": 1200, "height": 800}, locale="ko-KR")
        ctx.set_default_timeout(20000)
        ctx.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value,
                          "domain": "127.0.0.1", "path": "/"}])
        contexts.append(ctx)
        return ctx

    yield make
    for ctx in contexts:
        ctx.close()


def poll(page, expression: str, timeout: float = 20.0):
    """Wait until a JS expression is truthy (evaluate() is not subject to the page's CSP)."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached: {expression}")
        time.sleep(0.05)


def open_chat(ctx, site, path="/chat"):
    page = ctx.new_page()
    page.goto(f"http://127.0.0.1:{site.port}{path}")
    page.locator("#chat-state[data-state=connected]").wait_for()
    page.locator("#chat-agent option").first.wait_for(state="attached")
    return page


def ask(page, text: str):
    """Type and send; Enter is pressed only once the input holds the text (state, not time)."""
    box = page.locator("#chat-input")
    box.fill(text)
    expect(box).to_have_value(text)
    box.press("Enter")


def final_turn() -> Turn:
    return Turn.objects.order_by("-created_at").first()


BOT_TEXT = "Array.from(document.querySelectorAll('.msg.bot .body')).map(e => e.textContent)"
DONE = "document.querySelectorAll('.msg.bot').length > 0 && !document.querySelector('.msg.bot.streaming')"


def test_login_is_required(browser, site):
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(f"http://127.0.0.1:{site.port}/chat")
    assert "/admin/login/" in page.url
    ctx.close()


def test_stream_with_caret_markdown_and_keyboard(logged_in, site):
    page = open_chat(logged_in(), site)
    assert page.locator("html").get_attribute("lang") == "ko"
    assert page.locator("#chat-send").text_content() == "보내기"
    ask(page, "어떻게 동작하나요?")
    page.locator(".msg.bot.streaming .caret").wait_for()  # streams with a caret
    poll(page, DONE)
    turn = final_turn()
    assert turn.status == Turn.Status.COMPLETED
    assert page.locator(".msg.user .body").all_text_contents() == ["어떻게 동작하나요?"]
    bot = page.locator(".msg.bot .body")
    assert bot.locator("strong").first.text_content() == "좋은 질문이에요."
    link = bot.locator("a")
    assert link.get_attribute("href") == "https://docs.example.com/assistant" and link.get_attribute("rel") == "noopener noreferrer"
    assert page.evaluate(BOT_TEXT) == [page.evaluate(BOT_TEXT)[0]] and page.locator(".caret").count() == 0
    assert bot.text_content().replace(" ", "") == turn.reply_text.replace("**", "").replace("`", "").replace(
        "[문서](https://docs.example.com/assistant)", "문서").replace(" ", "")


def test_reload_mid_stream_neither_loses_nor_duplicates(logged_in, site, fake_llm):
    fake_llm.config.tokens_per_second = 10
    page = open_chat(logged_in(), site)
    ask(page, "길게 설명해 주세요")
    poll(page, "(document.querySelector('.msg.bot .body') || {}).textContent?.length > 10")
    page.reload()
    page.locator("#chat-state[data-state=connected]").wait_for()
    poll(page, DONE)
    turn = final_turn()
    assert turn.status == Turn.Status.COMPLETED
    assert page.locator(".msg.user").count() == 1 and page.locator(".msg.bot").count() == 1
    rendered = page.locator(".msg.bot .body").text_content()
    assert rendered.startswith("좋은 질문이에요.") and rendered.endswith("빠짐없이 순서대로 도착합니다.")
    assert len(rendered) == len(turn.reply_text.replace("**", "").replace("`", "").replace(
        "[문서](https://docs.example.com/assistant)", "문서"))


def test_network_cut_and_back_resumes_without_loss(logged_in, site, fake_llm):
    fake_llm.config.tokens_per_second = 10
    page = open_chat(logged_in(), site)
    ask(page, "끊겨도 이어서 받나요?")
    poll(page, "(document.querySelector('.msg.bot .body') || {}).textContent?.length > 5")
    site.cut()
    page.locator("#chat-state[data-state=reconnecting]").wait_for()
    assert "다시 연결 중" in page.locator("#chat-state").text_content()
    site.restore()
    page.locator("#chat-state[data-state=connected]").wait_for()
    assert "이어받았습니다" in page.locator("#chat-state").text_content()
    poll(page, DONE)
    turn = final_turn()
    rendered = page.locator(".msg.bot .body").text_content()
    assert page.locator(".msg.bot").count() == 1
    assert rendered == page.evaluate(BOT_TEXT)[0] and rendered.endswith("빠짐없이 순서대로 도착합니다.")
    assert len(rendered) == len(turn.reply_text.replace("**", "").replace("`", "").replace(
        "[문서](https://docs.example.com/assistant)", "문서"))


def test_stop_button_and_escape(logged_in, site, fake_llm):
    fake_llm.config.reply = " ".join(f"단어{i}" for i in range(300))
    fake_llm.config.tokens_per_second = 20
    page = open_chat(logged_in(), site)
    ask(page, "멈출 때까지 말해")
    page.locator("#chat-stop").wait_for()
    poll(page, "(document.querySelector('.msg.bot .body') || {}).textContent?.length > 10")
    page.locator("#chat-stop").click()
    page.locator(".tag-stopped").wait_for()
    assert page.locator("#chat-stop").is_hidden()
    turn = final_turn()
    poll(page, DONE)
    assert turn.is_finished and turn.reply_text
    assert page.locator(".msg.bot .body").text_content().startswith(turn.reply_text[:30])
    # Escape stops the next one from the keyboard.
    ask(page, "또 말해")
    poll(page, "document.querySelectorAll('.msg.bot').length === 2 && document.querySelector('.msg.bot.streaming .caret')")
    page.keyboard.press("Escape")
    poll(page, "document.querySelectorAll('.tag-stopped').length === 2")


def test_two_tabs_show_the_same_conversation(logged_in, site, fake_llm):
    ctx = logged_in()
    tab1, tab2 = open_chat(ctx, site), open_chat(ctx, site)
    assert tab1.evaluate("localStorage.getItem('mejai.chat.client_id')") == tab2.evaluate(
        "localStorage.getItem('mejai.chat.client_id')")
    ask(tab1, "두 탭에서 보이나요?")
    poll(tab1, DONE)
    poll(tab2, DONE)
    assert tab2.locator(".msg.user .body").all_text_contents() == ["두 탭에서 보이나요?"]
    assert tab1.evaluate(BOT_TEXT) == tab2.evaluate(BOT_TEXT)


def test_mobile_layout_and_english(logged_in, site):
    page = open_chat(logged_in(viewport={"width": 390, "height": 844}), site, "/chat?lang=en")
    assert page.locator("#chat-send").text_content() == "Send"
    box = page.locator("#chat-form").bounding_box()
    assert box["y"] + box["height"] <= 844 and box["width"] <= 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
