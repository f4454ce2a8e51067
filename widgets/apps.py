from django.apps import AppConfig


class WidgetsConfig(AppConfig):
    name = "widgets"
    verbose_name = "Widgets"

    def ready(self):
        from widgets import receivers  # noqa: F401  (signal receivers)
