"""Organization-scoped Django admin: the one base every ModelAdmin and inline of every app builds on.

A superuser sees and edits every organization. Any other staff user works inside the one
organization of their `runtime.Membership` (none: they see nothing):

* querysets (changelists, change/delete/history pages, actions, custom views, autocomplete
  answers) hold only rows of that organization;
* foreign-key and many-to-many choices (selects, raw-id lookups and their labels,
  autocomplete, list filters) offer only rows of that organization;
* a save is checked: the row's organization must be the user's, and every related row it points
  at must belong to the row's own organization (also for superusers, so no row ever links two
  tenants);
* organizations, memberships and the organization of an API key are editable by superusers only
  (`SuperuserEditOnlyAdmin`); users and groups are superuser-only (`SuperuserOnlyAdmin`).

How a model reaches its organization is found once from its foreign keys (`organization_path`):
`organization`, `widget__organization`, `session__organization`, … A model with no path is never
shown to non-superusers.
"""

from __future__ import annotations

from collections import deque
from functools import cache

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import NotRelationField, get_fields_from_path
from django.contrib.admin.widgets import ForeignKeyRawIdWidget
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist, PermissionDenied
from django.db import models

from runtime.models import Membership, Organization

_UNSET = object()
WRONG_ORGANIZATION = "다른 조직의 항목은 고를 수 없습니다. (An item of another organization cannot be used here.)"


def request_organization(request) -> Organization | None:
    """The organization a staff user works in (their Membership), cached on the request; None without one."""
    cached = getattr(request, "_mejai_organization", _UNSET)
    if cached is _UNSET:
        user = getattr(request, "user", None)
        membership = None
        if user is not None and user.is_authenticated:
            membership = Membership.objects.select_related("organization").filter(user=user).first()
        cached = membership.organization if membership else None
        request._mejai_organization = cached
    return cached


def sees_every_organization(request) -> bool:
    return bool(getattr(request.user, "is_superuser", False))


@cache
def organization_path(model: type[models.Model]) -> str | None:
    """The ORM lookup from `model` to its Organization (`"pk"` for Organization itself), or None.

    Breadth-first over forward foreign keys (shortest path wins; at most three hops), never
    through the user model, whose rows belong to no single organization.
    """
    if model is Organization:
        return "pk"
    user_model = get_user_model()
    queue: deque[tuple[type[models.Model], tuple[str, ...]]] = deque([(model, ())])
    seen = {model}
    while queue:
        current, path = queue.popleft()
        if len(path) >= 3:
            continue
        for field in current._meta.concrete_fields:
            if not (field.many_to_one or field.one_to_one) or field.related_model is None:
                continue
            related = field.related_model
            if related is Organization:
                return "__".join((*path, field.name))
            if related is user_model or related in seen:
                continue
            seen.add(related)
            queue.append((related, (*path, field.name)))
    return None


def organization_queryset(queryset: models.QuerySet, organization: Organization | None) -> models.QuerySet:
    """`queryset` narrowed to the rows of `organization` (none when it is None or unreachable)."""
    if organization is None:
        return queryset.none()
    model = queryset.model
    if model is get_user_model():
        # Staff of the organization: the only users an operator may pick (e.g. a prompt's author).
        return queryset.filter(mejai_membership__organization=organization)
    path = organization_path(model)
    if path is None:
        return queryset.none()
    return queryset.filter(**{path: organization.pk if path == "pk" else organization})


def organization_id_of(obj: models.Model) -> int | None:
    """The organization id of a (possibly unsaved) row, following `organization_path`; None if not set."""
    path = organization_path(type(obj))
    if path is None:
        return None
    if path == "pk":
        return obj.pk
    current = obj
    *hops, last = path.split("__")
    for hop in hops:
        if getattr(current, f"{hop}_id", None) is None:
            return None
        try:
            current = getattr(current, hop)
        except ObjectDoesNotExist:
            return None
    return getattr(current, f"{last}_id", None)


def _has_direct_organization(obj_or_model) -> bool:
    try:
        return obj_or_model._meta.get_field("organization").related_model is Organization
    except FieldDoesNotExist:
        return False


class OrganizationScopedRawIdWidget(ForeignKeyRawIdWidget):
    """A raw-id input whose label lookup sees only the allowed rows (the stock one reads any row by id)."""

    def __init__(self, rel, admin_site, *, queryset, **kwargs):
        super().__init__(rel, admin_site, **kwargs)
        self.queryset = queryset

    def label_and_url_for_value(self, value):
        key = self.rel.get_related_field().name
        try:
            if not self.queryset.filter(**{key: value}).exists():
                return "", ""
        except (ValueError, TypeError, ObjectDoesNotExist):
            return "", ""
        return super().label_and_url_for_value(value)


class OrganizationScopedForm(forms.ModelForm):
    """Refuses a row that points at a related row of another organization (field error, never a 500)."""

    def _post_clean(self):
        super()._post_clean()
        own = organization_id_of(self.instance)
        if own is None:
            return
        for field in self.instance._meta.concrete_fields:
            if not field.many_to_one or field.related_model in (Organization, get_user_model()):
                continue
            if organization_path(field.related_model) is None or getattr(self.instance, field.attname) is None:
                continue
            try:
                related = getattr(self.instance, field.name)
            except ObjectDoesNotExist:
                continue
            theirs = organization_id_of(related)
            if theirs is not None and theirs != own:
                self.add_error(field.name if field.name in self.fields else None, WRONG_ORGANIZATION)


class OrganizationScopedMixin:
    """Querysets and choices of one organization for non-superusers; shared by ModelAdmin and inlines."""

    form = OrganizationScopedForm

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if sees_every_organization(request):
            return queryset
        return organization_queryset(queryset, request_organization(request))

    def _related_choices(self, request, db_field, queryset):
        if queryset is None:
            queryset = db_field.remote_field.model._default_manager.all()
        return organization_queryset(queryset, request_organization(request))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if sees_every_organization(request):
            return super().formfield_for_foreignkey(db_field, request, **kwargs)
        kwargs["queryset"] = self._related_choices(request, db_field, kwargs.get("queryset"))
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if formfield is not None and isinstance(formfield.widget, ForeignKeyRawIdWidget):
            formfield.widget = OrganizationScopedRawIdWidget(
                db_field.remote_field, self.admin_site, queryset=formfield.queryset, using=kwargs.get("using")
            )
        if formfield is not None and db_field.related_model is Organization:
            formfield.empty_label = None
        return formfield

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if not sees_every_organization(request):
            kwargs["queryset"] = self._related_choices(request, db_field, kwargs.get("queryset"))
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class OrganizationScopedAdmin(OrganizationScopedMixin, admin.ModelAdmin):
    """The base of every ModelAdmin: see the module docstring for what it scopes."""

    def get_list_filter(self, request):
        # A plain foreign-key filter lists every row of the related table (other tenants' names
        # included); RelatedOnlyFieldListFilter lists only values present in the scoped queryset.
        filters = []
        for entry in super().get_list_filter(request):
            if isinstance(entry, str):
                try:
                    field = get_fields_from_path(self.model, entry)[-1]
                except (FieldDoesNotExist, NotRelationField):
                    field = None
                if field is not None and field.is_relation:
                    if field.related_model is Organization and not sees_every_organization(request):
                        continue  # one organization: nothing to filter
                    entry = (entry, admin.RelatedOnlyFieldListFilter)
            filters.append(entry)
        return filters

    def get_changelist_instance(self, request):
        # A date_hierarchy year past the calendar (?created_at__year=99999999999) raises OverflowError
        # inside Django's ChangeList, which only expects ValueError: refuse it like any other bad
        # lookup (changelist_view redirects to ?e=1) instead of a 500.
        try:
            return super().get_changelist_instance(request)
        except OverflowError as exc:
            raise IncorrectLookupParameters(exc) from exc

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        organization = request_organization(request)
        if organization is not None and _has_direct_organization(self.model):
            initial.setdefault("organization", organization.pk)
        return initial

    def save_model(self, request, obj, form, change):
        if not change and not sees_every_organization(request) and _has_direct_organization(obj):
            if obj.organization_id is None:  # not on the form for staff: their own organization
                obj.organization = self.request_organization_or_403(request)
        self.organization_check(request, obj)
        super().save_model(request, obj, form, change)

    def delete_model(self, request, obj):
        self.organization_check(request, obj)
        super().delete_model(request, obj)

    def request_organization_or_403(self, request) -> Organization:
        organization = request_organization(request)
        if organization is None:
            raise PermissionDenied(WRONG_ORGANIZATION)
        return organization

    def organization_check(self, request, obj) -> None:
        """Refuse (403) writing a row outside the user's organization; the last line behind the form checks."""
        if sees_every_organization(request):
            return
        organization = request_organization(request)
        if organization is None or organization_id_of(obj) != organization.pk:
            raise PermissionDenied(WRONG_ORGANIZATION)


class OrganizationScopedTabularInline(OrganizationScopedMixin, admin.TabularInline):
    pass


class OrganizationScopedStackedInline(OrganizationScopedMixin, admin.StackedInline):
    pass


class SuperuserEditOnlyAdmin(OrganizationScopedAdmin):
    """Staff may look at their own organization's rows; only superusers add, change or delete them."""

    def has_add_permission(self, request, *args):
        return sees_every_organization(request) and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None):
        return sees_every_organization(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return sees_every_organization(request) and super().has_delete_permission(request, obj)


class SuperuserOnlyMixin:
    """Rows that belong to no organization (users, groups): superusers only, whatever the permissions say."""

    def has_module_permission(self, request):
        return sees_every_organization(request)

    def has_view_permission(self, request, obj=None):
        return sees_every_organization(request)

    def has_add_permission(self, request, *args):
        return sees_every_organization(request)

    def has_change_permission(self, request, obj=None):
        return sees_every_organization(request)

    def has_delete_permission(self, request, obj=None):
        return sees_every_organization(request)
