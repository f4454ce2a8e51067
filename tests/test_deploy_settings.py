"""Issue 10 (Low): production settings pass `check --deploy`; secrets never enter the image."""

from __future__ import annotations

import fnmatch
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mejai.settings", "DEBUG": "0",
           "SECRET_KEY": secrets.token_urlsafe(60), "ALLOWED_HOSTS": "chat.example.com",
           "MEJAI_VAR_DIR": str(tmp_path), "SECURE_SSL_REDIRECT": "1", "SECURE_HSTS_SECONDS": "31536000",
           "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1", "SECURE_HSTS_PRELOAD": "1", "BEHIND_TLS_PROXY": "1",
           "DATABASE_URL": "", "REDIS_URL": ""}
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_hsts_and_redirect_come_from_the_environment(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mejai.settings", "DEBUG": "0", "SECRET_KEY": "x" * 60,
           "MEJAI_VAR_DIR": str(tmp_path), "SECURE_SSL_REDIRECT": "1", "SECURE_HSTS_SECONDS": "600",
           "DATABASE_URL": "", "REDIS_URL": ""}
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.MESSAGE_STORAGE.rsplit('.', 1)[-1])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "600", "SessionStorage"], out.stderr


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern + "/*") or path.startswith(pattern + "/"):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for path in (".env", ".env.production", "var/secret_key", "var/admin_password", "var/demo_api_key",
                 "var/mejai.sqlite3", "db.sqlite3", ".venv/bin/python", ".git/config"):
        assert _ignored(path, patterns), path
    for path in ("manage.py", "mejai/settings.py", ".env.example", "requirements.txt", "static/widgets/embed.js"):
        assert not _ignored(path, patterns), path
