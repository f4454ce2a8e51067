"""Assistant WebSocket routes (gathered by mejai.routing)."""

from django.urls import re_path

from assistant.consumers import ChatConsumer

websocket_urlpatterns = [
    # Any client_id reaches the consumer, which answers a malformed one with a clear error frame.
    re_path(r"^ws/chat/(?P<client_id>[^/]{1,200})$", ChatConsumer.as_asgi()),
]
