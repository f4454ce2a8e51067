"""Request bodies are read within one limit, never past it (issue 10: 6; issue 11: 15, 17).

* the ASGI guard (every route): bytes pulled from the server are counted, not timed;
* the real application behind a real server: a chunked body is read (never taken as empty), a
  1 MiB chunked body is refused;
* the shipped server (`python -m mejai.server`, daphne): the process's memory does not grow by
  the size of a large body it refuses — measured from /proc, not assumed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mejai.asgi_guards import RequestBodyLimit

ROOT = Path(__file__).resolve().parents[1]
KIB = 1024
MIB = 1024 * KIB


class Inner:
    """An application that reads the whole body, as Django does."""

    def __init__(self):
        self.called = False
        self.body = b""
        self.headers = {}

    async def __call__(self, scope, receive, send):
        self.called = True
        self.headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            self.body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def drive(headers: list[tuple[bytes, bytes]], *, total: int, chunk: int = 64 * KIB):
    """Run the guard over a body of `total` bytes sent in `chunk`s; (inner app, responses, bytes pulled)."""
    inner, sent = Inner(), []
    pulled = 0

    async def receive():
        nonlocal pulled
        if pulled >= total:
            return {"type": "http.disconnect"}
        size = min(chunk, total - pulled)
        pulled += size
        return {"type": "http.request", "body": b"x" * size, "more_body": pulled < total}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/kakao/skill", "headers": headers}
    await RequestBodyLimit(inner)(scope, receive, send)
    return inner, sent, pulled


@pytest.fixture
def limit(settings):
    settings.REQUEST_MAX_BODY_BYTES = 256 * KIB
    return settings.REQUEST_MAX_BODY_BYTES


async def test_a_chunked_body_over_the_limit_is_refused_and_not_read_further(limit, caplog):
    caplog.set_level(logging.WARNING)
    inner, sent, pulled = await drive([(b"transfer-encoding", b"chunked")], total=1 * MIB)
    assert not inner.called
    assert sent[0]["status"] == 413
    body = json.loads(sent[1]["body"])
    assert body["error"]["code"] == "payload_too_large" and "bytes" in body["error"]["message"]
    assert pulled <= limit + 64 * KIB  # stopped one chunk past the limit, not at 1 MiB
    refusals = [r for r in caplog.records if r.name == "mejai.request"]
    assert len(refusals) == 1 and refusals[0].levelno == logging.WARNING and not refusals[0].exc_info


async def test_a_declared_length_over_the_limit_is_refused_before_reading(limit):
    inner, sent, pulled = await drive([(b"content-length", str(300 * MIB).encode())], total=300 * MIB)
    assert not inner.called and sent[0]["status"] == 413 and pulled == 0


async def test_a_chunked_body_within_the_limit_reaches_the_app_with_its_length(limit):
    inner, sent, pulled = await drive([(b"transfer-encoding", b"chunked"), (b"content-type", b"application/json")],
                                      total=100 * KIB)
    assert inner.called and sent[0]["status"] == 200
    assert len(inner.body) == 100 * KIB and inner.headers["content-length"] == str(100 * KIB)
    assert "transfer-encoding" not in inner.headers


async def test_a_body_longer_than_declared_is_cut_at_the_limit(limit):
    inner, sent, pulled = await drive([(b"content-length", b"100")], total=1 * MIB)
    assert pulled <= limit + 64 * KIB and len(inner.body) <= limit + 64 * KIB


def _chunks(payload: bytes, size: int = 16 * KIB):
    for start in range(0, len(payload), size):
        yield payload[start:start + size]


def test_real_application_reads_chunked_json_and_refuses_a_chunked_mebibyte(live_server_asgi, api_key, offline_llm):
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    body = json.dumps({"message": "청크로 보낸 메시지", "metadata": {"pad": "x" * 40_000}}).encode()
    with httpx.Client(base_url=live_server_asgi.url, timeout=30) as http:
        response = http.post("/api/runtime/chat", content=_chunks(body), headers=headers)
        assert "content-length" not in {k.lower() for k in response.request.headers}  # really chunked
        assert response.status_code == 200, response.text  # never "message: this field is required"
        assert response.json()["message"]
        big = http.post("/api/runtime/chat", content=_chunks(b"{" + b" " * MIB + b"}"), headers=headers)
        assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"


def test_django_body_limit_logs_one_warning_line(client, caplog):
    """A form over DATA_UPLOAD_MAX_MEMORY_SIZE (behind the guard, e.g. in tests): no ERROR traceback."""
    caplog.set_level(logging.INFO)
    from django.conf import settings

    response = client.post("/admin/login/", data="a=" + "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10),
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]


# --- the shipped server ---------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def mejai_server(tmp_path):
    port = _free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mejai.settings", "SECRET_KEY": "body-limit-test", "DEBUG": "0",
           "ALLOWED_HOSTS": "127.0.0.1", "MEJAI_VAR_DIR": str(tmp_path), "REQUEST_MAX_BODY_BYTES": str(256 * KIB),
           "DATABASE_URL": "", "REDIS_URL": "", "LOG_LEVEL": "INFO"}
    proc = subprocess.Popen([sys.executable, "-m", "mejai.server", "-b", "127.0.0.1", "-p", str(port),
                             "mejai.asgi:application"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start: {proc.stdout.read().decode()[-2000:]}")
        time.sleep(0.1)
    yield proc, port
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _send_chunked(port: int, *, total: int) -> tuple[bytes, int]:
    """POST `total` bytes chunked to /kakao/skill until the server closes; (response, bytes sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /kakao/skill HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        piece = b"x" * (256 * KIB)
        frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        try:
            while sent < total:
                sock.sendall(frame)
                sent += len(piece)
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading and closed: what this test wants
        response = b""
        try:
            while chunk := sock.recv(65536):
                response += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return response, sent


def test_shipped_server_memory_does_not_grow_by_a_refused_body(mejai_server):
    proc, port = mejai_server
    before = _rss_kib(proc.pid)
    response, sent = _send_chunked(port, total=96 * MIB)
    after = _rss_kib(proc.pid)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert b"payload_too_large" in response
    # daphne alone queued the whole body in memory (+96 MiB); bounded, the growth is noise.
    assert after - before < 16 * 1024, (before, after)
    # A declared length over the limit is answered before any body is sent.
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /kakao/skill HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 314572800\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 413")
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200


def test_shipped_server_access_log_has_no_query_strings_or_personal_data(mejai_server):
    proc, port = mejai_server
    httpx.get(f"http://127.0.0.1:{port}/healthz?email=minsu@example.com&phone=010-1234-5678", timeout=5)
    httpx.get(f"http://127.0.0.1:{port}/nowhere/minsu@example.com", timeout=5)
    proc.terminate()
    output, _ = proc.communicate(timeout=10)
    text = output.decode(errors="replace")
    assert "GET /healthz" in text and "m***@example.com" in text  # logged, masked
    assert "minsu@example.com" not in text and "1234-5678" not in text and "email=" not in text
