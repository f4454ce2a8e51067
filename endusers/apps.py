from django.apps import AppConfig


class EndusersConfig(AppConfig):
    name = "endusers"
    verbose_name = "End users"

    def ready(self):
        from endusers import receivers
        from endusers.commands import commands_register
        from endusers.services import identity_resolve
        from runtime import signals
        from runtime.context import grounding_provider_register
        from runtime.identities import end_user_resolver_register

        grounding_provider_register(receivers.grounding_provide)
        end_user_resolver_register(identity_resolve)
        signals.turn_stored.connect(receivers.on_turn_stored, dispatch_uid="endusers.turn_stored")
        signals.turn_finished.connect(receivers.on_turn_finished, dispatch_uid="endusers.turn_finished")
        commands_register()
