"""ASGI entry point: HTTP (Django) and WebSocket (Channels) routing."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mejai.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from kakao.asgi import KakaoSkillAdmission  # noqa: E402
from mejai.admission import Admission  # noqa: E402
from mejai.asgi_guards import RequestBodyLimit  # noqa: E402
from mejai.celery import in_process_beat_start  # noqa: E402
from mejai.routing import websocket_urlpatterns  # noqa: E402

in_process_beat_start()  # periodic jobs when there is no broker (and so no `celery beat`)

application = ProtocolTypeRouter(
    {
        # Bodies are read within REQUEST_MAX_BODY_BYTES, chunked ones too (mejai/asgi_guards.py).
        # In-flight requests per endpoint class, past it 503 overloaded (mejai/admission.py); the
        # Kakao skill webhook sheds itself with a valid skill response instead (kakao/asgi.py).
        "http": KakaoSkillAdmission(Admission(RequestBodyLimit(django_asgi_app))),
        # Origin checks are per consumer: the widget socket accepts its customers' sites.
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
