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

        from mejai.dbpool import pool_check_install

        pool_check_install()

        # Rows the per-process hot cache keeps (runtime/hotcache.py): any change drops its organization's entries.
        from django.db.models.signals import post_delete, post_save

        from runtime import receivers
        from runtime.models import Agent, ApiKey, Organization, PromptTemplate, PromptVersion

        for model in (Agent, ApiKey, Organization, PromptTemplate, PromptVersion):
            for signal in (post_save, post_delete):
                signal.connect(receivers.on_cached_row_changed, sender=model,
                               dispatch_uid=f"runtime.hotcache.{signal is post_save}.{model.__name__}")
