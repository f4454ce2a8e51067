"""Web processes of their own for tests that need several (scale-out, cross-process fan-out).

`web_processes(server=…)` starts `count` servers on the test's PostgreSQL database and Redis with the
fake model, waits until each answers `/healthz` (state, not time; 60 s at most), yields their
`host:port` addresses and stops them afterwards, killing one that does not stop within 10 s.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

# The servers a test can ask for: argv after `python -m`, with {port} filled in.
SERVERS = {
    "daphne": ["mejai.server", "-b", "127.0.0.1", "-p", "{port}", "mejai.asgi:application"],
    "uvicorn": ["uvicorn", "mejai.asgi:application", "--host", "127.0.0.1", "--port", "{port}",
                "--ws", "websockets-sansio", "--lifespan", "off", "--log-level", "warning"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def web_processes(*, settings, fake_llm, server: str = "daphne", count: int = 2,
                  quiet: bool = True) -> Iterator[list[str]]:
    """Start `count` web processes (`server`: a key of SERVERS); yields their "127.0.0.1:port" addresses."""
    from django.db import connection

    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
                        f"/{connection.settings_dict['NAME']}",
        "DJANGO_SETTINGS_MODULE": "mejai.test_settings",
        "OPENAI_BASE_URL": fake_llm.base_url, "OPENAI_API_KEY": "test-key", "LLM_MAX_RETRIES": "0",
        "DB_POOL_MAX": "8",
    })
    output = subprocess.DEVNULL if quiet else None
    processes, addresses = [], []
    try:
        for _ in range(count):
            port = _free_port()
            argv = [part.format(port=port) for part in SERVERS[server]]
            processes.append(subprocess.Popen([sys.executable, "-m", *argv], cwd=settings.BASE_DIR, env=env,
                                              stdout=output, stderr=output))
            addresses.append(f"127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        for proc, address in zip(processes, addresses, strict=True):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"a web process exited at start ({proc.returncode})")
                try:
                    urllib.request.urlopen(f"http://{address}/healthz", timeout=1).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("a web process did not start in 60 s") from None
                    time.sleep(0.1)  # polling the state above, not a synchronisation delay
        yield addresses
    finally:
        for proc in processes:
            proc.terminate()
        for proc in processes:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
