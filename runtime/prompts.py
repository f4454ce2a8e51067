"""Versioned prompts: create versions, activate one, roll back; every change audited."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max

from mejai.errors import ApiError
from runtime.hotcache import organization_changed
from runtime.models import Organization, PromptAudit, PromptTemplate, PromptVersion


def prompt_template_get_or_create(*, organization: Organization, name: str, description: str = "") -> PromptTemplate:
    template, _ = PromptTemplate.objects.get_or_create(
        organization=organization, name=name, defaults={"description": description}
    )
    return template


@transaction.atomic
def prompt_version_create(
    *, template: PromptTemplate, text: str, note: str = "", author=None, actor_label: str = "", activate: bool = False
) -> PromptVersion:
    if not text or not text.strip():
        raise ApiError("invalid", "Prompt text must not be empty.", 400, field="text")
    # Lock the template so two writers cannot take the same version number.
    PromptTemplate.objects.select_for_update(of=("self",)).get(pk=template.pk)
    number = (template.versions.aggregate(n=Max("version"))["n"] or 0) + 1
    version = PromptVersion.objects.create(template=template, version=number, text=text.strip(), note=note, author=author)
    PromptAudit.objects.create(
        template=template, version=version, action=PromptAudit.Action.CREATE, actor=author, actor_label=actor_label
    )
    if activate or not template.versions.filter(is_active=True).exclude(pk=version.pk).exists():
        prompt_version_activate(version=version, actor=author, actor_label=actor_label)
        version.refresh_from_db()
    return version


@transaction.atomic
def prompt_version_activate(
    *, version: PromptVersion, actor=None, actor_label: str = "", action: str = PromptAudit.Action.ACTIVATE
) -> PromptVersion:
    """Make this the one active version of its template (the database refuses two)."""
    template = PromptTemplate.objects.select_for_update(of=("self",)).get(pk=version.template_id)
    previous = PromptVersion.objects.filter(template_id=version.template_id, is_active=True).first()
    if previous and previous.pk == version.pk:
        return version
    PromptVersion.objects.filter(template_id=version.template_id, is_active=True).update(is_active=False)
    PromptVersion.objects.filter(pk=version.pk).update(is_active=True)
    organization_changed(template.organization_id)  # the cached active version, in every process
    PromptAudit.objects.create(
        template_id=version.template_id, version=version, previous_version=previous, action=action,
        actor=actor, actor_label=actor_label,
    )
    version.is_active = True
    return version


def prompt_version_rollback(*, template: PromptTemplate, actor=None, actor_label: str = "") -> PromptVersion:
    """Re-activate the version that was active before the current one."""
    last = (
        PromptAudit.objects.filter(template=template, action__in=[PromptAudit.Action.ACTIVATE, PromptAudit.Action.ROLLBACK])
        .exclude(previous_version=None)
        .order_by("-created_at", "-pk")
        .first()
    )
    if last is None or last.previous_version is None:
        raise ApiError("nothing_to_roll_back", "There is no earlier active version to go back to.", 409)
    return prompt_version_activate(
        version=last.previous_version, actor=actor, actor_label=actor_label, action=PromptAudit.Action.ROLLBACK
    )
