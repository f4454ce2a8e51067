from django.apps import AppConfig


class EndusersConfig(AppConfig):
    name = "endusers"
    verbose_name = "End users"
