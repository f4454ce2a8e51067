"""Settings for the test suite: the real settings, with test-only defaults."""

import os

os.environ.setdefault("SECRET_KEY", "mejai-test-secret-key-not-for-production")
os.environ.setdefault("MEJAI_VAR_DIR", "/tmp/mejai-test-var")

from .settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING["root"]["level"] = "WARNING"  # noqa: F405


# Live-server tests serve on loopback addresses and random ports.
ALLOWED_HOSTS = ["*"]

# SQLite: a file-backed test database (one per test process) rather than shared-cache memory,
# whose table locks ignore the busy timeout and break live-server tests with concurrent writers.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": f"/tmp/mejai-test-{os.getpid()}.sqlite3"}  # noqa: F405

# Close connections at the end of each request so live-server threads leave none open at teardown.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405

# Readiness answers are cached per process in production; tests check each state afresh.
READYZ_CACHE_SECONDS = 0

# No periodic-job thread in the test process (the ASGI module is imported by live-server tests):
# tests run the periodic jobs themselves.
IN_PROCESS_BEAT = False
