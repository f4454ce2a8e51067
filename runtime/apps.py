from django.apps import AppConfig


class RuntimeConfig(AppConfig):
    name = "runtime"
    verbose_name = "Runtime"

    def ready(self) -> None:
        from mejai.labels import labels_translate
        from runtime import schema  # noqa: F401  (registers the OpenAPI auth scheme)

        # Admin has registered every ModelAdmin by now (django.contrib.admin is ready first).
        labels_translate()

        from mejai.overview import on_turn_finished
        from runtime import signals

        # The overview's daily roll-up learns that a closed day changed (a turn finished after midnight).
        signals.turn_finished.connect(on_turn_finished, dispatch_uid="overview.turn_finished")
