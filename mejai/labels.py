"""Korean-first labels for the operator console: model, field, choice, action and column names.

The code keeps its names in English (the msgids); `labels_translate()` (called once from
runtime's AppConfig.ready) wraps each in `gettext_lazy`, so admin shows them in the request's
language: Korean by default, English through the language setting. Translations live in
`locale/ko/LC_MESSAGES/django.po`, compiled to `django.mo` and committed (see docs/admin.md).
Only the runtime attributes are touched (`field.verbose_name`, `Options.verbose_name`…), never
what migrations read (`_verbose_name`, `original_attrs`); `makemigrations` runs without
translations, so the lazy help texts and choices compare equal to the stored English.
"""

from __future__ import annotations

import inspect

from django.apps import apps
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy

PROJECT_APPS = ("runtime", "endusers", "widgets", "kakao", "mchat", "assistant")


def _lazy(text):
    if isinstance(text, Promise):
        # e.g. Django's default plural, format_lazy("{}s", "end user"): translate the whole English text.
        from django.utils import translation

        with translation.override(None):
            text = str(text)
    if not isinstance(text, str) or not text:
        return text
    return gettext_lazy(text)


def label_texts() -> list[str]:
    """Every English label the console shows (the catalog's msgids); a test checks each has Korean."""
    texts: list[str] = []

    def add(value):
        if isinstance(value, Promise):
            from django.utils import translation

            with translation.override(None):
                value = str(value)
        if isinstance(value, str) and value and value not in texts:
            texts.append(value)

    for config in _configs():
        add(config.verbose_name)
    for model in _models():
        add(model._meta.verbose_name)
        add(model._meta.verbose_name_plural)
        for field in _fields(model):
            add(field.verbose_name)
            add(field.help_text)
            for _, label in field.flatchoices or ():
                add(label)
    for owner in _admin_classes():
        for _, function in inspect.getmembers(owner, inspect.isfunction):
            add(getattr(function, "short_description", None))
    return texts


def _configs():
    return [apps.get_app_config(label) for label in PROJECT_APPS if apps.is_installed(label)]


def _models():
    return [model for config in _configs() for model in config.get_models()]


def _fields(model):
    return [f for f in model._meta.get_fields() if not f.auto_created or f.concrete]


def _admin_classes():
    from django.contrib import admin

    classes = []
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in PROJECT_APPS:
            continue
        classes.append(type(model_admin))
        classes.extend(getattr(model_admin, "inlines", []) or [])
    return classes


def labels_translate() -> None:
    """Wrap every console label of the project's apps in gettext_lazy (idempotent)."""
    for config in _configs():
        config.verbose_name = _lazy(config.verbose_name)
    for model in _models():
        options = model._meta
        options.verbose_name = _lazy(options.verbose_name)
        options.verbose_name_plural = _lazy(options.verbose_name_plural)
        for field in _fields(model):
            field.verbose_name = _lazy(field.verbose_name)
            field.help_text = _lazy(field.help_text)
            if field.choices and not any(isinstance(label, (list, tuple)) for _, label in field.choices):
                field.choices = [(value, _lazy(label)) for value, label in field.choices]
    for owner in _admin_classes():
        for _, function in inspect.getmembers(owner, inspect.isfunction):
            if getattr(function, "short_description", None):
                function.short_description = _lazy(function.short_description)


# drf-spectacular's ENUM_NAME_OVERRIDES: the fields' own (translated) choices, so an override matches its
# field in every language (the enum classes' labels stay English while the fields' are translated).
def identity_kind_choices():
    from endusers.models import Identity

    return list(Identity._meta.get_field("kind").choices)


def memory_kind_choices():
    from endusers.models import Memory

    return list(Memory._meta.get_field("kind").choices)
