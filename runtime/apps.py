from django.apps import AppConfig


class RuntimeConfig(AppConfig):
    name = "runtime"
    verbose_name = "Runtime"

    def ready(self) -> None:
        from mejai.labels import labels_translate
        from runtime import schema  # noqa: F401  (registers the OpenAPI auth scheme)

        # Admin has registered every ModelAdmin by now (django.contrib.admin is ready first).
        labels_translate()
