"""Signal receivers of the runtime app itself."""

from __future__ import annotations


def on_cached_row_changed(sender, instance, **kwargs) -> None:
    """An organization, API key, agent or prompt was saved or deleted: the hot caches forget that
    organization's entries in every process (runtime/hotcache.py)."""
    from runtime.hotcache import organization_changed
    from runtime.models import Organization, PromptVersion

    if isinstance(instance, Organization):
        org_id = instance.pk
    elif isinstance(instance, PromptVersion):
        # Never a query here (a cascade may be deleting the template): unknown means every organization.
        org_id = instance.template.organization_id if PromptVersion.template.is_cached(instance) else None
    else:
        org_id = getattr(instance, "organization_id", None)
    organization_changed(org_id)
