"""Django settings for mejai, read from the environment (see .env.example)."""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from mejai.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("MEJAI_VAR_DIR") or BASE_DIR / "var")


DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    # Development: one generated key, kept on disk so sessions and tokens survive restarts.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://localhost:8000").rstrip("/")
# Set explicitly: the quickstart shows it; otherwise it shows the address the operator is using.
PUBLIC_BASE_URL_CONFIGURED = bool(env_str("PUBLIC_BASE_URL"))

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our own static files, pinned (no CDN)
    "axes",  # failed-login lockout for the admin and /api/auth/token
    "channels",
    "runtime",
    "endusers",
    "widgets",
    "kakao",
    "mchat",
    "assistant",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "mejai.overload.OverloadMiddleware",  # a refused database connection → 503 overloaded
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
    "mejai.middleware.JsonDepthLimit",
    "mejai.middleware.SyncMiddlewareBoundary",  # keep last: see its docstring
]

# --- Overload (mejai/admission.py, mejai/overload.py; docs/operations.md "Limits under load") ---
# In-flight requests per endpoint class (also the bound on request threads); < 0 = unlimited.
ADMISSION_LIMITS = {
    "runtime_chat": env_int("ADMISSION_RUNTIME_CHAT", 48),
    # SSE turns and live streams hold no thread once they stream: model connections and file descriptors bound them.
    "runtime_stream": env_int("ADMISSION_RUNTIME_STREAM", 200),
    "widget_chat": env_int("ADMISSION_WIDGET_CHAT", 48),
    "widget_stream": env_int("ADMISSION_WIDGET_STREAM", 10000),
    "other": env_int("ADMISSION_OTHER", 32),
}
# Past the limit, up to this many wait (on the event loop: no thread) at most ADMISSION_WAIT_SECONDS.
ADMISSION_QUEUE = {
    "runtime_chat": env_int("ADMISSION_RUNTIME_CHAT_QUEUE", 96, minimum=0),
    "runtime_stream": env_int("ADMISSION_RUNTIME_STREAM_QUEUE", 0, minimum=0),
    "widget_chat": env_int("ADMISSION_WIDGET_CHAT_QUEUE", 96, minimum=0),
    "widget_stream": env_int("ADMISSION_WIDGET_STREAM_QUEUE", 0, minimum=0),
    "other": env_int("ADMISSION_OTHER_QUEUE", 64, minimum=0),
}
ADMISSION_WAIT_SECONDS = env_float("ADMISSION_WAIT_SECONDS", 0.5, minimum=0)
OVERLOAD_RETRY_AFTER_SECONDS = env_int("OVERLOAD_RETRY_AFTER_SECONDS", 2, minimum=1)
OVERLOAD_DEGRADED_SECONDS = env_float("OVERLOAD_DEGRADED_SECONDS", 10.0, minimum=0)

# --- /readyz: anyone gets ready/unavailable; the checks' detail needs the token or an internal address.
READYZ_TOKEN = env_str("READYZ_TOKEN", "")
READYZ_DETAIL_NETWORKS = env_list("READYZ_DETAIL_NETWORKS", ("127.0.0.0/8", "::1/128"))
READYZ_CACHE_SECONDS = env_float("READYZ_CACHE_SECONDS", 2.0, minimum=0)

# --- Logins: standard password rules; lockout after repeated failures (django-axes) -----------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = __import__("datetime").timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
# One address trying many accounts, and one account tried from one address, are both locked out.
AXES_LOCKOUT_PARAMETERS = ["ip_address", ["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "mejai.proxy.client_ip_of_request"  # the trusted-proxy rule, not a raw header
AXES_LOCKOUT_CALLABLE = "mejai.lockout.lockout_response"
AXES_ENABLE_ADMIN = False  # runtime/admin.py registers the attempt logs for superusers only
AXES_VERBOSE = False

ROOT_URLCONF = "mejai.urls"
WSGI_APPLICATION = "mejai.wsgi.application"
ASGI_APPLICATION = "mejai.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: DATABASE_URL, or an embedded SQLite file -------------------------------
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'mejai.sqlite3'}",
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + immediate transactions let the web process and in-process jobs write
    # concurrently without "database is locked" surprises.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
IS_POSTGRES = DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql")
if IS_POSTGRES and env_bool("DB_POOL", True):
    # Under ASGI every request runs its sync code on a thread of its own, so persistent
    # per-thread connections leak; a process-wide psycopg pool (Django 5.1+) bounds them.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A checkout pings only a connection idle for DB_POOL_CHECK_IDLE_SECONDS (mejai/dbpool.py, installed
    # by the runtime app), not every one: Django's check adds a round trip to every thread hop of a request.
    from mejai.dbpool import pool_connection_returned

    DB_POOL_CHECK_IDLE_SECONDS = env_float("DB_POOL_CHECK_IDLE_SECONDS", 10.0, minimum=0.0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DB_POOL_MIN", 1),
        "max_size": env_int("DB_POOL_MAX", 20),
        # A short wait, then 503 `overloaded` with Retry-After (mejai/overload.py), not a 30 s hang;
        # past DB_POOL_MAX_WAITING waiters a request is refused at once (a queue with a limit).
        "timeout": env_float("DB_POOL_TIMEOUT", 3.0, minimum=0.1),
        "max_waiting": env_int("DB_POOL_MAX_WAITING", 100, minimum=0),
        "reset": pool_connection_returned,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer and Celery broker; unset = in-memory layer, in-process jobs ---
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default, exactly channels_redis's 5 s
                # BZPOPMIN: an idle receive then failed with TimeoutError (a widget socket closed 1011).
                # The read timeout must outlast the blocking pop.
                "hosts": [{
                    "address": REDIS_URL,
                    "socket_timeout": env_float("CHANNEL_LAYER_SOCKET_TIMEOUT", 30, minimum=10),
                    "socket_connect_timeout": env_float("CHANNEL_LAYER_CONNECT_TIMEOUT", 5, minimum=0.1),
                    "health_check_interval": 30,
                    # redis-py 8's asyncio pool holds at most 100 connections and fails at once beyond
                    # (MaxConnectionsError, closing sockets 1011): 100 answers publishing together reach it.
                    "max_connections": env_int("CHANNEL_LAYER_MAX_CONNECTIONS", 1000, minimum=10),
                }],
                "prefix": env_str("CHANNEL_PREFIX", "mejai"),
                # Many sessions stream through one process; the default of 100 queued messages per channel is low.
                "capacity": env_int("CHANNEL_CAPACITY", 1000),
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_PREFIX", "mejai"),
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL or "memory://"
CELERY_IN_PROCESS = not (env_str("CELERY_BROKER_URL") or REDIS_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "mejai")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = "UTC"
IN_PROCESS_JOB_THREADS = env_int("IN_PROCESS_JOB_THREADS", 4)
IN_PROCESS_BEAT = env_bool("IN_PROCESS_BEAT", True)  # without a broker: run periodic jobs in the web process
# Periodic jobs: run by `celery -A mejai beat` (one per deployment), or by the web process itself
# when jobs run in-process (mejai.celery.in_process_beat_start). Schedules in seconds.
CELERY_BEAT_SCHEDULE = {
    "kakao-callback-sweep": {"task": "kakao.callback_tasks_sweep",
                             "schedule": env_float("KAKAO_SWEEP_SECONDS", 15, minimum=1)},
    "endusers-purge-expired": {"task": "endusers.turns_purge_expired",
                               "schedule": env_float("ENDUSERS_PURGE_SECONDS", 24 * 3600, minimum=60)},
    # The admin overview's daily roll-up (mejai/overview.py): closed days missing or changed since.
    "overview-rollup": {"task": "runtime.overview_rollup",
                        "schedule": env_float("OVERVIEW_ROLLUP_SECONDS", 600, minimum=10)},
}

# --- LLM --------------------------------------------------------------------------------
OPENAI_API_KEY = env_str("OPENAI_API_KEY")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL")
LLM_MODEL = env_str("LLM_MODEL", "gpt-4o-mini")
LLM_CONNECT_TIMEOUT = env_float("LLM_CONNECT_TIMEOUT", 5, minimum=0.1)
LLM_READ_TIMEOUT = env_float("LLM_READ_TIMEOUT", 60, minimum=0.1)
LLM_MAX_RETRIES = env_int("LLM_MAX_RETRIES", 2, minimum=0)
# Model requests in flight per process (one HTTP connection each); past it a request waits at most
# LLM_CONNECTION_WAIT_SECONDS, then fails `model_busy` (503, retryable). docs/operations.md.
LLM_MAX_CONNECTIONS = env_int("LLM_MAX_CONNECTIONS", 200, minimum=1)
LLM_CONNECTION_WAIT_SECONDS = env_float("LLM_CONNECTION_WAIT_SECONDS", 2, minimum=0.01)
# An OpenAI-compatible server is used when either a key or a base URL is given;
# local servers (vLLM, Ollama, llama.cpp) usually need no key.
LLM_CONFIGURED = bool(OPENAI_API_KEY or OPENAI_BASE_URL)
# Model-server compatibility (docs/model-compatibility.md): optional parameters never sent,
# the name of the token limit, and how long a refused parameter is remembered per base URL+model.
LLM_OMIT_PARAMETERS = env_list("LLM_OMIT_PARAMETERS", ())
LLM_MAX_TOKENS_PARAMETER = env_str("LLM_MAX_TOKENS_PARAMETER", "max_tokens")
LLM_PARAMETER_MEMORY_SECONDS = env_int("LLM_PARAMETER_MEMORY_SECONDS", 86400, minimum=0)
# /readyz model check: a GET /models probe cached this long, and an outage window fed by real calls.
LLM_PROBE_SECONDS = env_int("LLM_PROBE_SECONDS", 30, minimum=1)
LLM_PROBE_TIMEOUT = env_float("LLM_PROBE_TIMEOUT", 2, minimum=0.1)
LLM_FAILURE_WINDOW_SECONDS = env_int("LLM_FAILURE_WINDOW_SECONDS", 120, minimum=1)
LLM_FAILURE_THRESHOLD = env_int("LLM_FAILURE_THRESHOLD", 3, minimum=1)
# Whether a model outage makes /readyz answer 503 (default: reported, status "degraded", 200).
READYZ_REQUIRE_LLM = env_bool("READYZ_REQUIRE_LLM", False)

# --- Runtime limits ----------------------------------------------------------------------
RUNTIME_MAX_MESSAGE_CHARS = env_int("RUNTIME_MAX_MESSAGE_CHARS", 4000, minimum=1)
RUNTIME_MAX_BODY_BYTES = env_int("RUNTIME_MAX_BODY_BYTES", 256 * 1024, minimum=1024)
RUNTIME_HISTORY_TOKEN_BUDGET = env_int("RUNTIME_HISTORY_TOKEN_BUDGET", 3000)
RUNTIME_HISTORY_MAX_TURNS = env_int("RUNTIME_HISTORY_MAX_TURNS", 20)
# POST /api/runtime/chat with external_id and no session_id continues that person's open API session
# with the same agent when its last message is at most this old; 0 = always start a new session.
RUNTIME_API_SESSION_IDLE_MINUTES = env_int("RUNTIME_API_SESSION_IDLE_MINUTES", 30)
# The admin index's overview (mejai/overview.py) may be kept this many seconds per organization set and
# language; 0 (default) = computed every visit (it reads the daily roll-up, bench/RESULTS.md).
ADMIN_OVERVIEW_CACHE_SECONDS = env_int("ADMIN_OVERVIEW_CACHE_SECONDS", 0)
RUNTIME_SSE_KEEPALIVE_SECONDS = env_float("RUNTIME_SSE_KEEPALIVE_SECONDS", 15, minimum=0.1)
# Threads that run the database calls of open streams and background answers (serial per stream:
# mejai.concurrency.SerialLane); no stream holds a thread of its own. Each holds a database connection
# while busy (given back after 1 s idle): keep it well below DB_POOL_MAX.
STREAM_DB_THREADS = env_int("STREAM_DB_THREADS", 8, minimum=1)
# A turn still pending/streaming after this long is treated as abandoned (its process died),
# so it no longer blocks the turns queued behind it.
RUNTIME_TURN_STALE_SECONDS = env_int("RUNTIME_TURN_STALE_SECONDS", 180, minimum=1)
# Per-process cache of API keys, agents and active prompts (runtime/hotcache.py): the longest an
# entry lives without an invalidation message (changes are published through Redis at once).
HOT_CACHE_TTL_SECONDS = env_float("HOT_CACHE_TTL_SECONDS", 60.0, minimum=0.0)
RUNTIME_ORDER_WAIT_SECONDS = env_int("RUNTIME_ORDER_WAIT_SECONDS", 120)
DATA_UPLOAD_MAX_MEMORY_SIZE = RUNTIME_MAX_BODY_BYTES
# Every request body, on every route: the ASGI guard (mejai/asgi_guards.py) and the server
# (mejai/server.py) stop reading past it; the reverse proxy (deploy/nginx.conf) refuses it first.
REQUEST_MAX_BODY_BYTES = env_int("REQUEST_MAX_BODY_BYTES", RUNTIME_MAX_BODY_BYTES)

# --- REST framework ----------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "mejai.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_PAGINATION_CLASS": "mejai.params.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
}
SIMPLE_JWT = {
    # Staff tokens for operator APIs. Widget tokens use their own audience and lifetime (widgets app).
    "ACCESS_TOKEN_LIFETIME": __import__("datetime").timedelta(minutes=env_int("STAFF_JWT_MINUTES", 30)),
    "REFRESH_TOKEN_LIFETIME": __import__("datetime").timedelta(days=1),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "mejai API",
    "DESCRIPTION": "Multi-channel AI chat platform: runtime, end users, widgets, channels.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc from drf-spectacular-sidecar (pinned in requirements.txt), served as our own
    # static files: /api/docs/ works offline and loads no third-party script on the admin's origin.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "mejai.api_glossary.descriptions_fill"],
    "ENUM_NAME_OVERRIDES": {
        "IdentityKindEnum": "mejai.labels.identity_kind_choices",
        "MemoryKindEnum": "mejai.labels.memory_kind_choices",
    },
}

# --- i18n, static ------------------------------------------------------------------------
LANGUAGE_CODE = "ko"
LANGUAGES = [("ko", "한국어"), ("en", "English")]
TIME_ZONE = env_str("TIME_ZONE", "Asia/Seoul")
USE_I18N = True
USE_TZ = True
LOCALE_PATHS = [BASE_DIR / "locale"]

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "/admin/login/"

# --- Security (production) ----------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY") else None
# Reverse proxies trusted for X-Forwarded-For (mejai/proxy.py): empty = none, a count ("1"), or CIDRs.
# The server never trusts the header by itself (daphne runs without --proxy-headers).
TRUSTED_PROXIES = env_str("TRUSTED_PROXIES", "") or ("1" if env_bool("WIDGET_TRUST_X_FORWARDED_FOR") else "")
try:
    from mejai.proxy import trusted_proxies_parse

    trusted_proxies_parse(TRUSTED_PROXIES)
except ValueError as exc:
    raise ImproperlyConfigured(f"TRUSTED_PROXIES: {exc}") from exc
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# HTTPS only (production behind TLS): redirect plain HTTP and send HSTS. Off by default so the
# embedded default runs on http://localhost; `manage.py check --deploy` is clean with them on.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # the container's own health checks speak plain HTTP
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Messages (e.g. a new API key shown once) live in the server-side session, never in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# --- Logging -----------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Emails, phone numbers and card-like numbers are masked in every log line (endusers/logging.py).
    "filters": {
        "pii": {"()": "endusers.logging.PiiMaskingFilter"},
        "client_error": {"()": "mejai.log.ClientErrorAsWarning"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["pii"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        # Bodies over the limit and forms with too many fields are the client's fault: one warning line.
        "django.security.RequestDataTooBig": {"filters": ["client_error"]},
        "django.security.TooManyFieldsSent": {"filters": ["client_error"]},
        "django.security.TooManyFilesSent": {"filters": ["client_error"]},
    },
}
