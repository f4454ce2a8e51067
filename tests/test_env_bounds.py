"""Values that parse but cannot work are refused with ImproperlyConfigured naming the variable
(mejai/env.py: never a silent fallback), not accepted into a broken server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "name, value",
    [
        # 0: the keep-alive loop sends comments with no pause (thousands per second per stream).
        ("RUNTIME_SSE_KEEPALIVE_SECONDS", "0"),
        ("RUNTIME_SSE_KEEPALIVE_SECONDS", "-1"),
        # 0: every earlier unanswered turn counts as abandoned at once, breaking the order of a session.
        ("RUNTIME_TURN_STALE_SECONDS", "0"),
        # 0: every message or body is refused.
        ("RUNTIME_MAX_MESSAGE_CHARS", "0"),
        ("RUNTIME_MAX_BODY_BYTES", "0"),
        # 0: every model call times out.
        ("LLM_READ_TIMEOUT", "0"),
        ("LLM_CONNECT_TIMEOUT", "0"),
        ("LLM_MAX_RETRIES", "-1"),
    ],
)
def test_settings_refuse_a_value_that_cannot_work(name, value):
    env = {k: v for k, v in os.environ.items() if k != name}
    env.update({name: value, "DJANGO_SETTINGS_MODULE": "mejai.test_settings", "PYTHONPATH": str(ROOT)})
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode != 0, f"{name}={value} was accepted"
    assert "ImproperlyConfigured" in result.stderr and name in result.stderr


def test_the_widget_stream_keepalive_refuses_zero(monkeypatch):
    from widgets import conf

    monkeypatch.setenv("WIDGET_SSE_KEEPALIVE_SECONDS", "0")
    with pytest.raises(ImproperlyConfigured, match="WIDGET_SSE_KEEPALIVE_SECONDS"):
        conf.sse_keepalive_seconds()
