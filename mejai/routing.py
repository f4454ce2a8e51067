"""WebSocket routes, gathered from the apps that own them."""

websocket_urlpatterns: list = []

for module in ("widgets.routing", "assistant.routing"):
    try:
        websocket_urlpatterns += __import__(module, fromlist=["websocket_urlpatterns"]).websocket_urlpatterns
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
