"""Settings for the test suite: the real settings, with test-only defaults."""

import os

os.environ.setdefault("SECRET_KEY", "mejai-test-secret-key-not-for-production")
os.environ.setdefault("MEJAI_VAR_DIR", "/tmp/mejai-test-var")

from .settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING["root"]["level"] = "WARNING"  # noqa: F405


