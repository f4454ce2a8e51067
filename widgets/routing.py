"""Widget WebSocket routes (gathered by mejai.routing)."""

from django.urls import path

from widgets.consumers import WidgetConsumer

websocket_urlpatterns = [
    path("api/widget/ws", WidgetConsumer.as_asgi()),
]
