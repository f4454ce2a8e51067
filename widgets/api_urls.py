"""Widget API routes, mounted at /api/widget/ by widgets.urls."""

from django.urls import path

from widgets import apis

urlpatterns = [
    path("init", apis.WidgetInitApi.as_view(), name="widget-init"),
    path("chat", apis.widget_chat, name="widget-chat"),  # plain async views (runtime.http.plain_view)
    path("stream", apis.widget_stream, name="widget-stream"),
    path("stream-ticket", apis.WidgetStreamTicketApi.as_view(), name="widget-stream-ticket"),
    path("event", apis.WidgetEventApi.as_view(), name="widget-event"),
]
