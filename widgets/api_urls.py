"""Widget API routes, mounted at /api/widget/ by widgets.urls."""

from django.urls import path

from widgets import apis

urlpatterns = [
    path("init", apis.WidgetInitApi.as_view(), name="widget-init"),
    path("chat", apis.WidgetChatApi.as_view(), name="widget-chat"),
    path("stream", apis.WidgetStreamApi.as_view(), name="widget-stream"),
    path("stream-ticket", apis.WidgetStreamTicketApi.as_view(), name="widget-stream-ticket"),
    path("event", apis.WidgetEventApi.as_view(), name="widget-event"),
]
