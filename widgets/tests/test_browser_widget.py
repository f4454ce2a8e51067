"""The web widget in a real browser: Debian's chromium driven by Playwright.

mejai runs on 127.0.0.1:<port> (live ASGI server); the customer's page is served by a tiny HTTP server
on another origin (localhost:<other port>) and holds only the one-line snippet. The same page opened as
127.0.0.1:<other port> is an origin the widget does not allow.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runtime.models import Session, Turn
from widgets.models import WidgetEvent
from widgets.services import widget_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DESKTOP = {"width": 1280, "height": 800}
MOBILE = {"width": 390, "height": 844}
REPLY = "**반갑습니다!** 저는 Acme 상담 도우미예요. 주문, 배송, 환불 무엇이든 물어보세요. 자세한 내용은 [도움말 센터](https://help.example.com/start) 를 참고해 주세요."


class HostSite:
    """The customer's website: serves the page it was given at every path (so SPA routes work too)."""

    def __init__(self):
        self.html = "<!doctype html><title>empty</title>"
        self.headers: dict[str, str] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = site.html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                for name, value in site.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def allowed_url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def other_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Each test's live server runs its own event loop; the cached Redis channel layer holds locks
    bound to the loop that first used it, so every test starts with a new layer instance."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(scope="module")
def host_site():
    site = HostSite()
    yield site
    site.stop()


@pytest.fixture
def mejai(live_server_asgi, fake_llm):
    fake_llm.config.reply = REPLY
    fake_llm.config.tokens_per_second = 25  # ~30 tokens over a second: a reply that visibly streams
    return live_server_asgi


@pytest.fixture
def widget(organization, agent, host_site):
    return widget_create(
        organization=organization,
        agent=agent,
        name="Acme 고객센터",
        allowed_domains=[f"localhost:{host_site.port}"],
        theme={
            "color": "#0f766e",
            "welcome_message": "안녕하세요! **Acme 고객센터**입니다. 무엇을 도와드릴까요?",
            "greeting": "보통 1분 안에 답해요",
        },
    )


def snippet(mejai, widget) -> str:
    return f'<script async src="{mejai.url}/widget.js" data-key="{widget.public_key}"></script>'


def host_page(body: str, title: str = "Acme Shop") -> str:
    return (
        "<!doctype html><html lang=ko><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>{title}</title></head><body><h1>{title}</h1><p>Welcome to our shop.</p>{body}</body></html>"
    )


CONSOLE: list[str] = []


@pytest.fixture
def context_factory(browser):
    contexts = []
    CONSOLE.clear()

    def make(viewport=DESKTOP, **kwargs):
        ctx = browser.new_context(viewport=viewport, locale="ko-KR", **kwargs)
        ctx.set_default_timeout(15000)
        ctx.on("console", lambda msg: CONSOLE.append(f"{msg.type}: {msg.text}"))
        ctx.on("requestfailed", lambda req: CONSOLE.append(f"requestfailed: {req.method} {req.url} {req.failure}"))
        ctx.on("response", lambda r: r.status >= 400 and CONSOLE.append(f"HTTP {r.status}: {r.request.method} {r.url}"))
        contexts.append(ctx)
        return ctx

    yield make
    for ctx in contexts:
        ctx.close()


DIAG = """() => {
  const S = window.mejaiEmbed && mejaiEmbed.state;
  if (!S) return null;
  return {busy: S.busy, queue: S.queue.map(i => i.text), started: S.started, attempt: S.attempt, open: S.open,
          session: S.sessionId, token: !!S.token, input: document.getElementById('mw-input').value,
          disabled: document.getElementById('mw-input').disabled, inits: S.inits, sent: S.sent,
          rows: document.querySelectorAll('.mw-row').length, keys: window.__keylog || null,
          nav: performance.getEntriesByType('navigation').map(n => n.type), url: location.href,
          focus: document.hasFocus(), active: document.activeElement && document.activeElement.id};
}"""


def poll(target, expression: str, timeout: float = 15.0):
    """Wait until a JS expression is truthy. (wait_for_function compiles its predicate in the page,
    which a strict CSP without 'unsafe-eval' forbids; evaluate() is not subject to the page's CSP.)"""
    deadline = time.monotonic() + timeout
    while True:
        value = target.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for: {expression}\npage: "
                + " ".join((target.evaluate("document.body.innerText") or "").split())
                + "\nstate: "
                + str(target.evaluate(DIAG))
                + "\nconsole: "
                + "\n".join(CONSOLE)
            )
        time.sleep(0.05)


SETTLED = """(() => {
  const root = document.querySelector('.mejai-w'), panel = document.querySelector('.mejai-w-panel');
  if (!root || !root.classList.contains('mejai-w-open')) return true;
  const cs = getComputedStyle(panel);
  return cs.opacity === '1' && (cs.transform === 'none' || cs.transform === 'matrix(1, 0, 0, 1, 0, 0)');
})()"""


def embed_frame(page):
    poll(page, "!!document.querySelector('.mejai-w-frame')")
    # Let the open animation finish: clicks inside the (cross-origin) iframe are aimed at coordinates
    # measured inside it, and a panel still sliding into place would make them land beside the target.
    poll(page, SETTLED)
    handle = page.query_selector(".mejai-w-frame")
    frame = handle.content_frame()
    frame.wait_for_selector("#mw-input:not([disabled])")
    return frame


def shot(page, name: str, full_page: bool = False):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


STREAM_RECORDER = """() => {
  window.__paints = [];
  const log = document.getElementById('mw-log');
  new MutationObserver(() => {
    const b = document.querySelector('.mw-row.mw-streaming .mw-bubble');
    if (b) window.__paints.push(b.textContent);
  }).observe(log, {childList: true, subtree: true, characterData: true});
}"""


KEYLOG = """() => {
  if (window.__keylog) return;
  window.__keylog = [];
  document.addEventListener('keydown', e => __keylog.push('keydown:' + e.key + ':' + (e.target.id || e.target.tagName)), true);
  document.addEventListener('submit', e => __keylog.push('submit'), true);
  document.addEventListener('input', e => __keylog.push('input:' + e.target.value.length), true);
  window.addEventListener('pagehide', () => __keylog.push('pagehide'));
}"""


# Last resort for tests about something other than typing: put the text in the composer and submit
# the form from inside the frame. Chrome routes Input.insertText to the page-level focused frame,
# and a click that lands while the panel is still opening can leave that focus on the host page.
DOM_SEND = """(text) => {
  const input = document.getElementById('mw-input');
  input.value = text;
  input.dispatchEvent(new Event('input', {bubbles: true}));
  input.form.requestSubmit();
}"""


def form_fill(frame, **values: str) -> None:
    """Type into the reply's form fields and wait until each input holds its value (state, not time)."""
    for name, value in values.items():
        selector = f".mw-form input[name={name}]"
        frame.fill(selector, value)
        poll(frame, f"document.querySelector({json.dumps(selector)}).value === {json.dumps(value)}")


def send(frame, text: str, *, dom_fallback: bool = True):
    """Type a message and press Enter, as a visitor does; returns once the panel has taken it.

    With dom_fallback, a message the keyboard did not deliver twice is submitted from inside the
    frame (with a warning), so tests of errors, retries and offline state do not hinge on
    Chrome's cross-origin focus; the main end-to-end test passes dom_fallback=False.
    """
    frame.evaluate(KEYLOG)
    before = frame.evaluate("mejaiEmbed.state.sent")
    for attempt in range(2):
        # Click first, as a visitor does: Chrome lets a cross-origin iframe take keyboard focus from
        # a real click, not from the programmatic focus() alone that fill() would use.
        frame.click("#mw-input")
        frame.fill("#mw-input", text)
        frame.press("#mw-input", "Enter")
        try:
            poll(frame, f"mejaiEmbed.state.sent > {before}", timeout=5)
            return
        except AssertionError as exc:
            # Should not happen since the click; if keystrokes ever go astray again, re-type once and say so.
            warnings.warn(f"send({text!r}) attempt {attempt + 1} did not reach the panel: {exc}", stacklevel=2)
    if dom_fallback:
        warnings.warn(f"send({text!r}): keyboard input did not reach the frame; submitting from the DOM", stacklevel=2)
        frame.evaluate(DOM_SEND, text)
        poll(frame, f"mejaiEmbed.state.sent > {before}", timeout=5)
        return
    raise AssertionError(f"the panel never took {text!r}: {frame.evaluate(DIAG)}")


def last_reply(frame) -> str:
    try:
        frame.wait_for_selector(".mw-row.mw-bot[data-turn]:not(.mw-streaming) .mw-bubble")
    except Exception as exc:
        raise AssertionError(
            "no reply; the panel shows: "
            + " ".join(frame.text_content("body").split())
            + "\nstate: "
            + str(frame.evaluate(DIAG))
            + "\nconsole: "
            + "\n".join(CONSOLE)
        ) from exc
    return frame.eval_on_selector_all(
        ".mw-row.mw-bot[data-turn]:not(.mw-streaming) .mw-bubble", "els => els[els.length - 1].textContent"
    )


def test_one_line_snippet_streams_a_reply_and_resumes_after_reload(mejai, widget, host_site, context_factory):
    host_site.html = host_page(snippet(mejai, widget))
    host_site.headers = {}
    page = context_factory().new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(host_site.allowed_url + "/")

    launcher = page.wait_for_selector(".mejai-w-launcher", state="visible")
    assert launcher.get_attribute("aria-expanded") == "false"
    assert "Acme" in launcher.get_attribute("aria-label")
    shot(page, "widget-desktop-closed.png")

    launcher.click()
    page.wait_for_selector(".mejai-w-panel", state="visible")
    assert launcher.get_attribute("aria-expanded") == "true"
    box = page.query_selector(".mejai-w-panel").bounding_box()
    assert 360 <= box["width"] <= 420 and 560 <= box["height"] <= 640, box
    frame = embed_frame(page)
    assert "Acme 고객센터" in frame.text_content(".mw-welcome")
    frame.evaluate(STREAM_RECORDER)

    send(frame, "안녕하세요, 주문 상태를 알고 싶어요", dom_fallback=False)  # real typing, no fallback
    reply = last_reply(frame)
    assert reply.startswith("반갑습니다!") and "도움말 센터" in reply
    paints = [p for p in frame.evaluate("window.__paints") if p]
    partial = {p for p in paints if len(p) < len(reply)}
    assert len(partial) >= 3, f"the reply arrived in {len(partial)} partial paints: {paints[:5]}"
    # Rendered as safe markdown: bold, and a link that opens safely.
    assert frame.text_content(".mw-row.mw-bot[data-turn] strong") == "반갑습니다!"
    link = frame.query_selector(".mw-row.mw-bot[data-turn] a")
    assert link.get_attribute("href") == "https://help.example.com/start"
    assert link.get_attribute("rel") == "noopener noreferrer" and link.get_attribute("target") == "_blank"
    shot(page, "widget-desktop-open.png")

    session = Session.objects.get(channel="web_widget", metadata__widget_id=widget.pk)
    visitor = page.evaluate(f"localStorage.getItem('mejai:visitor:{widget.public_key}')")
    assert visitor and session.metadata["visitor_id"] == visitor
    assert session.metadata["origin"] == host_site.allowed_url
    assert Turn.objects.get(session=session).reply_text.startswith("**반갑습니다!**")

    # Escape closes the panel and gives focus back to the launcher.
    frame.press("#mw-input", "Escape")
    page.wait_for_selector(".mejai-w-panel", state="hidden")
    assert page.evaluate("document.activeElement.classList.contains('mejai-w-launcher')")
    assert launcher.get_attribute("aria-expanded") == "false"

    # A reload resumes the same session, with its history.
    page.reload()
    page.click(".mejai-w-launcher")
    frame = embed_frame(page)
    frame.wait_for_selector(".mw-divider")
    texts = frame.eval_on_selector_all(".mw-row .mw-bubble", "els => els.map(e => e.textContent)")
    assert any("주문 상태를 알고 싶어요" in t for t in texts)
    assert any(t.startswith("반갑습니다!") for t in texts)
    send(frame, "감사합니다")
    last_reply(frame)
    poll(frame, "document.querySelectorAll('.mw-row.mw-bot[data-turn]').length >= 2")
    assert Session.objects.filter(channel="web_widget", metadata__widget_id=widget.pk).count() == 1
    assert Turn.objects.filter(session=session).count() == 2
    kinds = set(WidgetEvent.objects.filter(widget=widget).values_list("event_type", flat=True))
    assert {"load", "open", "close"} <= kinds
    assert not errors, errors


def test_mobile_viewport_is_fullscreen(mejai, widget, host_site, context_factory):
    host_site.html = host_page(snippet(mejai, widget))
    host_site.headers = {}
    page = context_factory(viewport=MOBILE, is_mobile=True, has_touch=True, device_scale_factor=2).new_page()
    page.goto(host_site.allowed_url + "/")
    page.wait_for_selector(".mejai-w-launcher", state="visible")
    shot(page, "widget-mobile-closed.png")
    page.tap(".mejai-w-launcher")
    page.wait_for_selector(".mejai-w-panel", state="visible")
    page.wait_for_timeout(300)  # the open transition
    box = page.query_selector(".mejai-w-panel").bounding_box()
    assert box == {"x": 0, "y": 0, "width": MOBILE["width"], "height": MOBILE["height"]}, box
    frame = embed_frame(page)
    send(frame, "배송은 얼마나 걸리나요?")
    last_reply(frame)
    shot(page, "widget-mobile-open.png")
    # The panel's close button, by keyboard (as a screen-reader user would).
    frame.focus("#mw-close")
    frame.press("#mw-close", "Enter")
    page.wait_for_selector(".mejai-w-launcher", state="visible")


def test_not_allowed_origin_gets_no_widget(mejai, widget, host_site, context_factory):
    host_site.html = host_page(snippet(mejai, widget))
    host_site.headers = {}
    page = context_factory().new_page()
    messages = []
    page.on("console", lambda msg: messages.append(msg.text))
    page.goto(host_site.other_url + "/")
    poll(page, "window.mejaiWidget && window.mejaiWidget.version === '1'")
    deadline = time.monotonic() + 15
    while not any("did not start" in m for m in messages) and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert any("did not start" in m for m in messages), messages
    assert page.query_selector(".mejai-w") is None
    assert page.query_selector("iframe") is None
    assert not Session.objects.filter(channel="web_widget").exists()

    # Framing the embed page directly from that origin is refused by its frame-ancestors policy.
    host_site.html = host_page(f'<iframe id="raw" src="{mejai.url}/embed/{widget.public_key}"></iframe>')
    page.goto(host_site.other_url + "/raw")
    page.wait_for_timeout(800)
    frame = page.query_selector("#raw").content_frame()
    assert frame is None or frame.query_selector("#mw-log") is None


def test_strict_host_csp_second_copy_queue_and_spa_routes(mejai, widget, host_site, context_factory):
    # No 'unsafe-inline' anywhere: the widget needs only its own origin for script, style, connect and frame.
    host_site.headers = {
        "Content-Security-Policy": (
            f"default-src 'self'; script-src 'self' {mejai.url}; style-src 'self' {mejai.url}; "
            f"connect-src {mejai.url}; frame-src {mejai.url}; img-src 'self'"
        )
    }
    # Config and a queued call before the script (as an external file would do it; inline is blocked here).
    host_site.html = host_page(
        f'<script src="{host_site.allowed_url}/boot.js"></script>' + snippet(mejai, widget) + snippet(mejai, widget)
    )
    page = context_factory().new_page()
    violations, console = [], []
    page.on("console", lambda msg: console.append(msg.text))
    boot_js = (
        "window.mejaiWidget = window.mejaiWidget || function () { (mejaiWidget.q = mejaiWidget.q || []).push(arguments); };"
        "mejaiWidget.position = 'bottom-left'; window.__events = [];"
        "mejaiWidget('on', 'ready', function (i) { __events.push('ready'); });"
        "mejaiWidget('on', 'open', function () { __events.push('open'); });"
        "mejaiWidget('on', 'message', function (p) { __events.push('message:' + p.turn_id); });"
        "mejaiWidget('open');"
        "document.addEventListener('securitypolicyviolation', function (e) { (window.__csp = window.__csp || []).push(e.violatedDirective + ' ' + e.blockedURI); });"
    )
    page.route(
        f"{host_site.allowed_url}/boot.js",
        lambda route: route.fulfill(status=200, content_type="application/javascript", body=boot_js),
    )
    page.goto(host_site.allowed_url + "/")
    page.wait_for_selector(".mejai-w-panel", state="visible")  # the queued open() ran after load
    assert page.evaluate("document.querySelectorAll('.mejai-w').length") == 1
    assert any("already loaded" in m for m in console), console
    assert page.evaluate("document.querySelector('.mejai-w').classList.contains('mejai-w-left')")
    assert page.evaluate("getComputedStyle(document.querySelector('.mejai-w-launcher')).borderRadius") == "50%"
    frame = embed_frame(page)
    send(frame, "CSP 테스트")
    last_reply(frame)
    poll(page, "window.__events.some(e => e.startsWith('message:'))")
    assert page.evaluate("window.__events.slice(0, 2)") == ["ready", "open"]
    violations = page.evaluate("window.__csp || []")
    assert violations == [], violations

    # A single-page app changes route: the widget records the new page.
    page.evaluate("history.pushState({}, '', '/products/42'); document.title = 'Product 42'")
    for _ in range(50):
        if WidgetEvent.objects.filter(widget=widget, event_type="page_view").exists():
            break
        page.wait_for_timeout(100)
    event = WidgetEvent.objects.get(widget=widget, event_type="page_view")
    assert event.payload["url"] == host_site.allowed_url + "/products/42"
    # The host API works after load as a method and as a call.
    page.evaluate("mejaiWidget.close()")
    page.wait_for_selector(".mejai-w-panel", state="hidden")
    page.evaluate("mejaiWidget('toggle')")
    page.wait_for_selector(".mejai-w-panel", state="visible")


def test_markdown_tricks_render_as_text(mejai, widget, host_site, context_factory, fake_llm):
    fake_llm.config.reply = (
        "<script>window.pwned=1</script> <img src=x onerror=window.pwned=2> "
        "[클릭](javascript:window.pwned=3) [data](data:text/html,hi) **굵게** `<b>code</b>` [안전](https://example.com/a?b=1&c=2)"
    )
    fake_llm.config.tokens_per_second = 0
    host_site.html = host_page(snippet(mejai, widget))
    host_site.headers = {}
    page = context_factory().new_page()
    page.goto(host_site.allowed_url + "/")
    page.click(".mejai-w-launcher")
    frame = embed_frame(page)
    send(frame, "<script>alert(1)</script> [x](javascript:alert(1))")
    reply = last_reply(frame)
    assert "<script>window.pwned=1</script>" in reply
    bubble = ".mw-row.mw-bot[data-turn] .mw-bubble"
    assert frame.eval_on_selector(bubble, "b => b.querySelectorAll('script, img, b').length") == 0
    hrefs = frame.eval_on_selector(bubble, "b => [...b.querySelectorAll('a')].map(a => a.getAttribute('href'))")
    assert hrefs == ["https://example.com/a?b=1&c=2"]
    assert "[클릭](javascript:window.pwned=3)" in reply
    assert frame.eval_on_selector(bubble, "b => b.querySelector('code').textContent") == "<b>code</b>"
    # The visitor's own message is shown as typed.
    user = frame.eval_on_selector(".mw-row.mw-user .mw-bubble", "b => b.textContent")
    assert "<script>alert(1)</script>" in user
    assert frame.evaluate("window.pwned") is None and page.evaluate("window.pwned") is None

    # The renderer's rules, case by case.
    cases = frame.evaluate("""() => {
      const r = (t) => { const d = document.createElement('div'); d.appendChild(mejaiMarkdown.render(t)); return d.innerHTML; };
      return {
        list: r('- 하나\\n- **둘**\\n\\n1. first\\n2. second'),
        italic: r('*기울임* and _this_ but snake_case_name stays'),
        code: r('```\\n<div>x</div>\\n```'),
        vbscript: r('[a](vbscript:msgbox) [b]( https://ok.example/x )'),
        quote: r('"quoted" & <tag attr="x">'),
        autolink: r('see https://example.com/path.'),
        dunder: r('call obj.__init__ or window.__x=1 then window.__y; __진짜 굵게__'),
      };
    }""")
    assert cases["list"] == "<ul><li>하나</li><li><strong>둘</strong></li></ul><ol><li>first</li><li>second</li></ol>"
    assert cases["italic"] == "<p><em>기울임</em> and <em>this</em> but snake_case_name stays</p>"
    assert cases["code"] == "<pre><code>&lt;div&gt;x&lt;/div&gt;</code></pre>"
    assert (
        cases["vbscript"]
        == '<p>[a](vbscript:msgbox) <a href="https://ok.example/x" rel="noopener noreferrer" target="_blank">b</a></p>'
    )
    assert cases["quote"] == '<p>"quoted" &amp; &lt;tag attr="x"&gt;</p>'
    assert cases["dunder"] == "<p>call obj.__init__ or window.__x=1 then window.__y; <strong>진짜 굵게</strong></p>"
    assert (
        cases["autolink"]
        == '<p>see <a href="https://example.com/path" rel="noopener noreferrer" target="_blank">https://example.com/path</a>.</p>'
    )


def test_rate_limit_expired_token_and_form(mejai, widget, host_site, context_factory, settings, fake_llm):
    from endusers.models import Identity
    from runtime.commands import CommandReply, command_register

    fake_llm.config.tokens_per_second = 0
    command_register(
        "contact_test",
        handler=lambda ctx: CommandReply(
            message="연락처를 남겨 주시면 담당자가 연락드릴게요.",
            quick_replies=[{"label": "나중에", "message": "나중에 할게요"}],
            response_schema={
                "type": "object",
                "title": "연락처",
                "required": ["email"],
                "properties": {
                    "name": {"type": "string", "title": "이름"},
                    "email": {"type": "string", "format": "email", "title": "이메일"},
                },
            },
        ),
    )
    host_site.html = host_page(snippet(mejai, widget))
    host_site.headers = {}
    page = context_factory().new_page()
    page.goto(host_site.allowed_url + "/")
    page.click(".mejai-w-launcher")
    frame = embed_frame(page)

    # A form appears only when the reply asks for something; it validates, then records claims.
    send(frame, "/contact_test")
    frame.wait_for_selector(".mw-form")
    # The turn is settled (nothing answering or queued) before typing: a form filled while the
    # panel still re-renders can be replaced by its twin, and its submit then finds it empty.
    poll(frame, "!mejaiEmbed.state.busy && !mejaiEmbed.state.queue.length && !!document.querySelector('.mw-form')")
    assert frame.text_content(".mw-quick .mw-chip") == "나중에"
    form_fill(frame, email="not-an-email")
    frame.click(".mw-form button[type=submit]")
    poll(frame, "document.querySelector('.mw-form input[name=email]').getAttribute('aria-invalid') === 'true'")
    assert "이메일" in frame.text_content(".mw-field-error:not(:empty)")
    form_fill(frame, name="김민지", email="minji@example.com")
    frame.click(".mw-form button[type=submit]")
    frame.wait_for_selector(".mw-form-done")
    event = WidgetEvent.objects.get(widget=widget, event_type="form_submit")
    assert event.payload["values"] == {"name": "김**", "email": "m***@example.com"}  # stored masked
    assert Identity.objects.filter(kind="email", verified=False).exists()

    # An expired or broken token: the iframe asks the host to re-init and the message still goes through.
    frame.evaluate("mejaiEmbed.state.token = mejaiEmbed.state.token.slice(0, -4) + 'AAAA'")
    send(frame, "토큰이 바뀌어도 괜찮나요?")
    poll(frame, "document.querySelectorAll('.mw-row.mw-bot[data-turn]').length >= 2")
    assert frame.query_selector(".mw-failed") is None
    assert Turn.objects.filter(user_text="토큰이 바뀌어도 괜찮나요?").count() == 1

    # Rate limited: a friendly state in the panel, and the message is kept to send later.
    settings.WIDGET_RATE_CHAT_VISITOR = 1
    settings.WIDGET_RATE_CHAT_VISITOR_WINDOW = 60
    send(frame, "하나")
    frame.wait_for_selector(".mw-banner-rate", state="visible")
    assert "너무 빨리" in frame.text_content("#mw-banner-text")
    shot(page, "widget-desktop-rate-limited.png")


def test_quickstart_page_copy_and_live_preview(mejai, widget, context_factory, client):
    from django.contrib.auth import get_user_model

    from runtime.models import Membership
    from widgets.models import ChatWidget, WidgetDailyStat

    user = get_user_model().objects.create_user(username="operator", password="pw-12345", is_staff=True)
    Membership.objects.create(user=user, organization=widget.organization)
    client.force_login(user)
    ctx = context_factory(viewport={"width": 1360, "height": 1000})
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=mejai.url)
    ctx.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": mejai.url}])
    page = ctx.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(mejai.url + "/app/settings/?tab=quickstart")
    assert page.text_content("#qs-snippet") == (
        f'<script async src="{mejai.url}/widget.js" data-key="{widget.public_key}"></script>'
    )
    page.click('[data-copy="#qs-snippet"]')
    page.wait_for_selector('[data-copy="#qs-snippet"].is-done')
    assert page.evaluate("navigator.clipboard.readText()") == page.text_content("#qs-snippet")
    # The identity secret is hidden until asked for.
    assert page.get_attribute("#qs-secret", "type") == "password"
    page.click('[data-reveal="#qs-secret"]')
    assert page.get_attribute("#qs-secret", "type") == "text"
    page.click("#qs-tab-node")
    assert page.is_visible("#qs-hmac-node") and not page.is_visible("#qs-hmac-py")
    # The live preview: the static panel preview, and the real widget.js in the corner of this page.
    page.wait_for_selector(".mejai-w-launcher", state="visible")
    preview = page.query_selector(".qs-preview-frame").content_frame()
    preview.wait_for_selector(".mw-welcome")
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(300)
    shot(page, "quickstart-desktop.png", full_page=True)
    page.click("[data-widget-open]")
    frame = embed_frame(page)
    send(frame, "미리보기에서 인사해요")
    last_reply(frame)
    shot(page, "quickstart-desktop-preview-chat.png")
    session = Session.objects.get(channel="web_widget", metadata__widget_id=widget.pk)
    assert session.metadata["preview"] is True
    assert not WidgetDailyStat.objects.filter(widget=widget).exists()  # preview chats are not counted
    assert ChatWidget.objects.get(pk=widget.pk).last_seen_at is None  # nor is mejai itself an install
    assert not errors, errors

    # Narrow screens: one column.
    page.evaluate("mejaiWidget.close()")
    page.set_viewport_size(MOBILE)
    page.reload()
    page.wait_for_selector(".mejai-w-launcher", state="visible")
    assert page.evaluate("document.documentElement.scrollWidth") <= MOBILE["width"]
    shot(page, "quickstart-mobile-top.png")
    shot(page, "quickstart-mobile.png", full_page=True)


def test_reply_in_another_tab_shows_an_unread_badge(mejai, widget, host_site, context_factory, fake_llm):
    fake_llm.config.tokens_per_second = 0
    host_site.html = host_page(snippet(mejai, widget))
    host_site.headers = {}
    ctx = context_factory()
    first = ctx.new_page()
    first.goto(host_site.allowed_url + "/")
    first.click(".mejai-w-launcher")
    send(embed_frame(first), "첫 탭에서 보냅니다")
    last_reply(embed_frame(first))

    # A second tab of the same visitor: same session, panel closed, listening.
    second = ctx.new_page()
    second.goto(host_site.allowed_url + "/other")
    second.wait_for_selector(".mejai-w-launcher", state="visible")
    second.evaluate("window.__unread = []; mejaiWidget.on('unread', function (e) { __unread.push(e.count); })")
    frame_b = second.query_selector(".mejai-w-frame").content_frame()
    poll(frame_b, "!!(window.mejaiEmbed && mejaiEmbed.state.started)")
    second.wait_for_timeout(300)  # the live stream subscribes

    first.bring_to_front()
    send(embed_frame(first), "두 번째 질문이에요")
    poll(
        first.query_selector(".mejai-w-frame").content_frame(),
        "document.querySelectorAll('.mw-row.mw-bot[data-turn]:not(.mw-streaming)').length >= 2",
    )

    second.wait_for_selector(".mejai-w-unread .mejai-w-badge", state="visible")
    assert second.text_content(".mejai-w-badge") == "1"
    assert second.evaluate("window.__unread") == [1]
    assert "새 메시지 1개" in second.get_attribute(".mejai-w-launcher", "aria-label")
    shot(second, "widget-desktop-unread-badge.png")
    second.click(".mejai-w-launcher")
    # The other tab's reply is in this panel too (after the first one, resumed as history).
    poll(frame_b, "document.querySelectorAll('.mw-row.mw-bot[data-turn]').length === 2")
    users = frame_b.eval_on_selector_all(".mw-row.mw-user .mw-bubble", "els => els.map(e => e.textContent)")
    assert [u.split(": ", 1)[-1] for u in users] == ["첫 탭에서 보냅니다", "두 번째 질문이에요"]
    second.wait_for_selector(".mejai-w-badge", state="hidden")
    assert second.evaluate("window.__unread") == [1, 0]


def test_host_api_set_user_and_reset(mejai, widget, host_site, context_factory, fake_llm):
    from widgets.services import identity_hash_make

    fake_llm.config.tokens_per_second = 0
    host_site.html = host_page(snippet(mejai, widget))
    host_site.headers = {}
    page = context_factory().new_page()
    page.goto(host_site.allowed_url + "/")
    page.click(".mejai-w-launcher")
    frame = embed_frame(page)
    send(frame, "로그인 전입니다")
    last_reply(frame)
    anonymous = frame.evaluate("mejaiEmbed.state.sessionId")
    visitor = page.evaluate(f"localStorage.getItem('mejai:visitor:{widget.public_key}')")

    # Login: a signed user id gets the user's own conversation; the panel switches to it.
    user_hash = identity_hash_make(secret=widget.identity_secret, user_id="u-42")
    page.evaluate(f"mejaiWidget.setUser({{id: 'u-42', name: '김민지', hash: '{user_hash}'}})")
    poll(frame, f"mejaiEmbed.state.sessionId && mejaiEmbed.state.sessionId !== '{anonymous}'")
    assert frame.evaluate("document.querySelectorAll('.mw-row').length") == 1  # only the welcome
    send(frame, "로그인했어요")
    last_reply(frame)
    verified = Session.objects.get(pk=frame.evaluate("mejaiEmbed.state.sessionId"))
    assert verified.metadata["verified"] is True
    assert verified.end_user.identities.filter(kind="external_id", verified=True).exists()

    # Logout: a new visitor id, a new conversation, an empty panel.
    page.evaluate("mejaiWidget.reset()")
    poll(frame, f"mejaiEmbed.state.sessionId && !['{anonymous}', '{verified.pk}'].includes(mejaiEmbed.state.sessionId)")
    assert page.evaluate(f"localStorage.getItem('mejai:visitor:{widget.public_key}')") not in (None, visitor)
    assert frame.evaluate("document.querySelectorAll('.mw-row').length") == 1
    send(frame, "로그아웃 후")
    poll(frame, "document.querySelectorAll('.mw-row.mw-bot[data-turn]').length === 1")
    assert Session.objects.filter(channel="web_widget", metadata__widget_id=widget.pk).count() == 3


def test_model_errors_retry_and_offline_waits(mejai, widget, host_site, context_factory, fake_llm):
    fake_llm.config.tokens_per_second = 0
    host_site.html = host_page(snippet(mejai, widget))
    host_site.headers = {}
    ctx = context_factory()
    page = ctx.new_page()
    page.goto(host_site.allowed_url + "/")
    page.click(".mejai-w-launcher")
    frame = embed_frame(page)

    # The model fails until told otherwise (background memory extraction calls it too, so the
    # failures are switched off explicitly rather than counted).
    # A model outage (5xx): said as such ("답변이 지연되고 있어요"), not as a network failure, and
    # not retried automatically against the same outage; the visitor's retry is a new turn.
    fake_llm.config.fail_status, fake_llm.config.fail_times = 503, 10_000
    send(frame, "첫 질문")
    frame.wait_for_selector(".mw-banner-model", state="visible")
    assert "답변이 지연되고 있어요" in frame.text_content("#mw-banner-text")
    frame.wait_for_selector(".mw-row.mw-user.mw-failed .mw-meta button")
    assert list(Turn.objects.filter(user_text="첫 질문").values_list("status", flat=True)) == ["failed"]
    assert frame.query_selector(".mw-banner-reconnecting") is None
    fake_llm.config.fail_times = 0
    frame.click("#mw-banner-retry")
    last_reply(frame)
    statuses = list(Turn.objects.filter(user_text="첫 질문").order_by("seq").values_list("status", flat=True))
    assert statuses == ["failed", "completed"], statuses
    assert frame.query_selector(".mw-failed") is None
    frame.wait_for_selector("#mw-banner", state="hidden")

    # A failure a retry will not fix by itself (4xx): an error state with a retry button.
    fake_llm.config.fail_status, fake_llm.config.fail_times = 400, 10_000
    send(frame, "두 번째 질문")
    frame.wait_for_selector(".mw-banner-error", state="visible")
    frame.wait_for_selector(".mw-row.mw-user.mw-failed .mw-meta button")
    assert frame.text_content("#mw-banner-text") == "메시지를 보내지 못했어요."  # not the operator-facing detail
    shot(page, "widget-desktop-error-retry.png")
    fake_llm.config.fail_times = 0
    frame.click("#mw-banner-retry")
    poll(frame, "document.querySelectorAll('.mw-row.mw-bot[data-turn]:not(.mw-streaming)').length === 2")
    assert frame.query_selector(".mw-failed") is None
    assert frame.is_hidden("#mw-banner")

    # Offline: the message waits, the panel says so, and it goes once the connection is back.
    ctx.set_offline(True)
    poll(frame, "navigator.onLine === false")
    send(frame, "오프라인에서 보냄")
    frame.wait_for_selector(".mw-banner-offline", state="visible")
    assert "인터넷 연결" in frame.text_content("#mw-banner-text")
    assert not Turn.objects.filter(user_text="오프라인에서 보냄").exists()
    ctx.set_offline(False)
    poll(frame, "document.querySelectorAll('.mw-row.mw-bot[data-turn]:not(.mw-streaming)').length === 3")
    assert Turn.objects.get(user_text="오프라인에서 보냄").status == "completed"


def test_english_locale_and_cta_click(mejai, widget, host_site, context_factory, fake_llm):
    fake_llm.config.tokens_per_second = 0
    host_site.html = host_page(
        f'<script async src="{mejai.url}/widget.js" data-key="{widget.public_key}" data-locale="en"></script>'
    )
    host_site.headers = {}
    ctx = context_factory()
    # The reply's link must never leave the machine: answer it locally.
    ctx.route(
        "https://help.example.com/**", lambda route: route.fulfill(status=200, body="help", content_type="text/plain")
    )
    page = ctx.new_page()
    page.goto(host_site.allowed_url + "/")
    page.click(".mejai-w-launcher")
    frame = embed_frame(page)
    assert frame.get_attribute("#mw-input", "placeholder") == "Type a message…"
    assert frame.get_attribute("#mw-close", "aria-label") == "Close chat"
    assert frame.evaluate("document.documentElement.lang") == "en"
    send(frame, "Where is the help center?")
    last_reply(frame)
    page.evaluate("window.__hostEvents = []; mejaiWidget.on('event', function (e) { __hostEvents.push(e); })")
    with ctx.expect_page() as popup:
        frame.click(".mw-row.mw-bot[data-turn] a")
    assert popup.value.url == "https://help.example.com/start"
    for _ in range(50):
        if WidgetEvent.objects.filter(widget=widget, event_type="cta_click").exists():
            break
        page.wait_for_timeout(100)
    event = WidgetEvent.objects.get(widget=widget, event_type="cta_click")
    assert event.payload["url"] == "https://help.example.com/start" and event.payload["text"] == "도움말 센터"
    host_events = page.evaluate("window.__hostEvents")
    assert [e["type"] for e in host_events] == ["cta_click"]
    assert host_events[0]["payload"]["url"] == "https://help.example.com/start"


def test_host_csp_that_blocks_the_stylesheet_still_gets_a_working_widget(mejai, widget, host_site, context_factory):
    host_site.headers = {
        "Content-Security-Policy": (
            f"default-src 'self'; script-src {mejai.url}; style-src 'self'; connect-src {mejai.url}; frame-src {mejai.url}"
        )
    }
    host_site.html = host_page(snippet(mejai, widget))
    page = context_factory().new_page()
    console = []
    page.on("console", lambda msg: console.append(msg.text))
    page.goto(host_site.allowed_url + "/")
    launcher = page.wait_for_selector(".mejai-w-launcher", state="visible")
    assert any("launcher.css did not load" in m for m in console), console
    box = launcher.bounding_box()
    assert box["x"] > DESKTOP["width"] - 120 and box["y"] > DESKTOP["height"] - 120, box  # still in the corner
    launcher.click()
    page.wait_for_selector(".mejai-w-panel", state="visible")
    frame = embed_frame(page)
    send(frame, "스타일 없이도 되나요?")
    last_reply(frame)
    page.keyboard.press("Escape")
    page.wait_for_selector(".mejai-w-panel", state="hidden")


def test_demo_allowlist_gives_a_frame_ancestors_chromium_accepts(mejai, organization, agent, host_site, context_factory):
    """The demo widget's CSP (no "[::1]", issue 9) draws no CSP console error in Chromium, and the
    embed page loads framed from localhost."""
    from widgets.demo import DEMO_DOMAINS

    demo = widget_create(organization=organization, agent=agent, name="demo", allowed_domains=DEMO_DOMAINS)
    host_site.html = host_page(snippet(mejai, demo))
    host_site.headers = {}
    page = context_factory().new_page()
    page.goto(host_site.allowed_url + "/")
    page.click(".mejai-w-launcher")
    frame = embed_frame(page)
    frame.wait_for_selector("#mw-log")
    csp_errors = [m for m in CONSOLE if "Content-Security-Policy" in m or "Content Security Policy" in m or "frame-ancestors" in m]
    assert csp_errors == [], csp_errors


def test_truncated_answer_is_marked_not_shown_whole(mejai, widget, host_site, context_factory, fake_llm):
    from runtime.fakes import shapes

    fake_llm.script(shapes.openai_stream(["환불은 7일 이내", "에 가능하며, 다음 서류가"], finish="length"))
    host_site.html = host_page(snippet(mejai, widget))
    host_site.headers = {}
    page = context_factory().new_page()
    page.goto(host_site.allowed_url + "/")
    page.click(".mejai-w-launcher")
    frame = embed_frame(page)
    send(frame, "환불 서류 알려줘")
    assert "다음 서류가" in last_reply(frame)
    frame.wait_for_selector(".mw-row.mw-bot .mw-truncated")
    assert "끊겼어요" in frame.text_content(".mw-truncated")


def test_greeting_bubble_next_to_the_launcher_does_what_the_admin_help_says(mejai, widget, host_site, context_factory):
    """widgets.admin "인사말 · Greeting": a bubble beside the closed launcher; click opens the chat; × hides it
    for the tab's session; opening the chat hides it; the greeting is also the subtitle under the title."""
    from widgets.admin import ChatWidgetForm

    help_text = str(ChatWidgetForm.base_fields["theme_greeting"].help_text)
    assert "말풍선" in help_text and "bubble next to the closed launcher" in help_text
    host_site.html = host_page(snippet(mejai, widget))
    host_site.headers = {}
    for viewport in (DESKTOP, MOBILE):
        page = context_factory(viewport=viewport).new_page()
        page.goto(host_site.allowed_url + "/")
        page.wait_for_selector(".mejai-w-greeting", state="visible")
        assert page.text_content(".mejai-w-greeting-text") == "보통 1분 안에 답해요"
        bubble = page.query_selector(".mejai-w-greeting").bounding_box()
        launcher = page.query_selector(".mejai-w-launcher").bounding_box()
        # Beside the launcher (left of it, not over it), bottom-aligned with it, inside the viewport.
        assert bubble["x"] + bubble["width"] <= launcher["x"] and launcher["x"] - (bubble["x"] + bubble["width"]) <= 24
        assert abs((bubble["y"] + bubble["height"]) - (launcher["y"] + launcher["height"])) <= 12
        assert bubble["x"] >= 0 and bubble["y"] >= 0, bubble
        shot(page, f"widget-greeting-{viewport['width']}.png")
        if viewport is DESKTOP:
            # The ×: gone, and still gone after a reload in this tab.
            page.click(".mejai-w-greeting-close")
            page.wait_for_selector(".mejai-w-greeting", state="detached")
            page.reload()
            page.wait_for_selector(".mejai-w-launcher", state="visible")
            assert page.query_selector(".mejai-w-greeting") is None
        else:
            # Clicking the bubble opens the chat, whose subtitle is the greeting; the bubble is gone.
            page.click(".mejai-w-greeting-text")
            frame = embed_frame(page)
            assert frame.text_content("#mw-status") == "보통 1분 안에 답해요"
            assert page.query_selector(".mejai-w-greeting") is None


def test_no_greeting_no_bubble(mejai, organization, agent, host_site, context_factory):
    bare = widget_create(organization=organization, agent=agent, name="bare",
                         allowed_domains=[f"localhost:{host_site.port}"], theme={"greeting": ""})
    host_site.html = host_page(snippet(mejai, bare))
    host_site.headers = {}
    page = context_factory().new_page()
    page.goto(host_site.allowed_url + "/")
    page.wait_for_selector(".mejai-w-launcher", state="visible")
    assert page.query_selector(".mejai-w-greeting") is None


def test_a_busy_server_shows_busy_and_the_message_goes_when_capacity_returns(mejai, widget, host_site, context_factory,
                                                                             settings, fake_llm):
    """Past the widget-chat admission limit the server answers 503 `overloaded` + Retry-After: the panel
    says it is busy and retrying, keeps the message, and sends it by itself once there is capacity."""
    fake_llm.config.tokens_per_second = 0
    settings.OVERLOAD_RETRY_AFTER_SECONDS = 1
    host_site.html = host_page(snippet(mejai, widget))
    host_site.headers = {}
    page = context_factory().new_page()
    refused: list[int] = []
    page.on("response", lambda r: r.status == 503 and "/api/widget/chat" in r.url and refused.append(r.status))
    page.goto(host_site.allowed_url + "/")
    page.click(".mejai-w-launcher")
    frame = embed_frame(page)
    poll(frame, "!!(window.mejaiEmbed && mejaiEmbed.state.token)")

    settings.ADMISSION_LIMITS = {"widget_chat": 0}  # no capacity for widget chats at all
    send(frame, "바쁠 때 보낸 질문")
    frame.wait_for_selector(".mw-banner-busy", state="visible")
    assert "잠시 바빠요" in frame.text_content("#mw-banner-text")
    assert frame.query_selector(".mw-row.mw-user.mw-pending") is not None  # kept, waiting to go
    assert frame.query_selector(".mw-failed") is None
    while len(refused) < 2:  # it retried by itself (Retry-After, backoff) and was refused again
        page.wait_for_event("response", predicate=lambda r: "/api/widget/chat" in r.url)
    assert not Turn.objects.filter(user_text="바쁠 때 보낸 질문").exists()
    shot(page, "widget-desktop-busy.png")

    settings.ADMISSION_LIMITS = {"widget_chat": 100}  # capacity is back
    last_reply(frame)
    frame.wait_for_selector("#mw-banner", state="hidden")
    assert frame.query_selector(".mw-row.mw-user.mw-pending") is None
    assert list(Turn.objects.filter(user_text="바쁠 때 보낸 질문").values_list("status", flat=True)) == ["completed"]
