"""Signal receivers of the widgets app."""

from __future__ import annotations

from django.db.models.signals import post_save
from django.dispatch import receiver

from widgets.models import ChatWidget


@receiver(post_save, sender=ChatWidget, dispatch_uid="widgets.widget_changed_notify")
def widget_saved(sender, instance: ChatWidget, created: bool, **kwargs) -> None:
    # Deactivation or a key rotation (admin, API, shell) reaches the widget's open sockets at once.
    if not created:
        from widgets.services import widget_changed_notify

        widget_changed_notify(widget=instance)
