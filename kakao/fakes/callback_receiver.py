"""A fake Kakao callback receiver on loopback, for tests and bench/: real HTTP, Kakao's answers.

It answers each POST to /v1/bots/<bot>/callback/<token> like Kakao would — SUCCESS, a FAIL
message, ERROR, a non-JSON body, an HTTP 5xx/429, a redirect, slowly, or by dropping the
connection — and records what it got. Behaviours are planned per token (a list consumed one
request at a time) with a default for everything else. Connection refused: `closed_port_url()`.

    python -m kakao.fakes.callback_receiver --port 8099
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = re.compile(r"^/v1/bots/([^/]+)/callback/([^/?#]+)$")

SUCCESS = "success"
FAIL_TOKEN = "fail_token"
FAIL_TESTING = "fail_testing"
FAIL_NOT_ENABLED = "fail_not_enabled"
FAIL_INVALID_JSON = "fail_invalid_json"
ERROR = "error"
NON_JSON = "non_json"
HTTP_500 = "http_500"
HTTP_502 = "http_502"
HTTP_429 = "http_429"
REDIRECT = "redirect"
SLOW = "slow"  # sleep `slow_seconds`, then SUCCESS
DROP = "drop"  # close the connection without answering

FAIL_MESSAGES = {
    FAIL_TOKEN: "Invalid callback token. Check your callback token.",
    FAIL_TESTING: "Callback token for testing purposes. It always fails.",
    FAIL_NOT_ENABLED: "Callback is not enabled for this block.",
    FAIL_INVALID_JSON: "Invalid JSON format. Check your response.",
}


@dataclass
class Received:
    bot_id: str
    token: str
    raw_path: str
    headers: dict
    body: object  # parsed JSON, or the raw text when it was not JSON
    at: float  # time.time() when the request arrived
    behaviour: str


@dataclass
class ReceiverConfig:
    default: str = SUCCESS
    slow_seconds: float = 3.0
    plans: dict[str, list[str]] = field(default_factory=dict)  # token -> behaviours, consumed in order


class FakeKakaoReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.config = ReceiverConfig()
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                self._answer(405, {"error": "method not allowed"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                match = PATH.match(self.path)
                if not match:
                    self._answer(404, {"status": "FAIL", "message": "Not found."})
                    return
                try:
                    body = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    body = raw.decode("utf-8", "replace")
                bot_id, token = match.groups()
                behaviour = receiver._next_behaviour(token)
                record = Received(bot_id, token, self.path, dict(self.headers), body, time.time(), behaviour)
                receiver._record(record)
                if behaviour == DROP:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if behaviour == SLOW:
                    time.sleep(receiver.config.slow_seconds)
                    behaviour = SUCCESS
                if behaviour == NON_JSON:
                    self._answer(200, "<html><body>OK</body></html>", content_type="text/html")
                elif behaviour in (HTTP_500, HTTP_502, HTTP_429):
                    self._answer(int(behaviour[-3:]), "upstream trouble", content_type="text/plain")
                elif behaviour == REDIRECT:
                    self._answer(302, "", content_type="text/plain",
                                 extra={"Location": f"http://127.0.0.1:{receiver.port}/elsewhere"})
                elif behaviour == ERROR:
                    self._answer(200, receiver._kakao("ERROR", "Internal server error occured. Please contact technical support. 504"))
                elif behaviour in FAIL_MESSAGES:
                    self._answer(200, receiver._kakao("FAIL", FAIL_MESSAGES[behaviour]))
                else:
                    self._answer(200, receiver._kakao("SUCCESS", "OK"))

            def _answer(self, status, body, content_type="application/json", extra=None):
                data = body if isinstance(body, str) else json.dumps(body)
                raw = data.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(raw)))
                    for name, value in (extra or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:
                    pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> FakeKakaoReceiver:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kakao", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(5)

    def reset(self) -> None:
        with self._lock:
            self.config = ReceiverConfig()
            self.received.clear()

    # --- configuration -------------------------------------------------------------------
    def plan(self, token: str, *behaviours: str) -> None:
        with self._lock:
            self.config.plans[token] = list(behaviours)

    def callback_url(self, *, bot_id: str = "5ae9b76d7409b11ec845b746", token: str | None = None) -> str:
        return f"http://{self.host}:{self.port}/v1/bots/{bot_id}/callback/{token or new_token()}"

    # --- inspection -------------------------------------------------------------------
    def for_token(self, token: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.token == token]

    def wait_for(self, count: int, *, token: str | None = None, timeout: float = 10.0) -> list[Received]:
        """Block until `count` requests (for `token`, or in all) arrived, or the timeout passed."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                got = [r for r in self.received if token is None or r.token == token]
                remaining = deadline - time.monotonic()
                if len(got) >= count or remaining <= 0:
                    return got
                self._arrived.wait(remaining)

    # --- internals ---------------------------------------------------------------------
    def _next_behaviour(self, token: str) -> str:
        with self._lock:
            plan = self.config.plans.get(token)
            if plan:
                return plan.pop(0)
            return self.config.default

    def _record(self, record: Received) -> None:
        with self._arrived:
            self.received.append(record)
            self._arrived.notify_all()

    @staticmethod
    def _kakao(status: str, message: str) -> dict:
        return {"taskId": str(uuid.uuid4()), "status": status, "message": message, "timestamp": int(time.time() * 1000)}


def new_token() -> str:
    return uuid.uuid4().hex + "-" + uuid.uuid4().hex[:8]


def closed_port_url(*, bot_id: str = "5ae9b76d7409b11ec845b746", token: str | None = None) -> str:
    """A callback URL on a loopback port nobody listens on: connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/bots/{bot_id}/callback/{token or new_token()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--default", default=SUCCESS, help="behaviour for every request")
    args = parser.parse_args()
    receiver = FakeKakaoReceiver(args.host, args.port)
    receiver.config.default = args.default
    receiver.start()
    print(f"fake Kakao callback receiver on http://{receiver.host}:{receiver.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        receiver.stop()


if __name__ == "__main__":
    main()
