"""Widget pages: the loader script, the chat iframe, the quickstart settings page."""

from django.urls import path

from widgets import views

urlpatterns = [
    path("widget.js", views.widget_js, name="widget-js"),
    path("embed/<str:public_key>", views.embed, name="widget-embed"),
    path("app/settings/", views.settings_page, name="app-settings"),
]
