from django.apps import AppConfig


class MchatConfig(AppConfig):
    name = "mchat"
    verbose_name = "Mattermost (Mchat)"
