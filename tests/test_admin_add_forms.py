"""Every add page of the console (review of issue 11): an empty submission is a form error, never a 500, and a
model whose fields are all read-only (rows the pipeline writes) offers no add page at all."""

from __future__ import annotations

import pytest
from django.contrib import admin

PROJECT_APPS = {"runtime", "endusers", "widgets", "kakao", "mchat", "assistant"}


def project_admins():
    return sorted((m for m in admin.site._registry if m._meta.app_label in PROJECT_APPS), key=lambda m: m._meta.label)


@pytest.mark.django_db
def test_an_empty_add_form_is_never_a_500(admin_client):
    seen = []
    for model in project_admins():
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/add/"
        before = model._default_manager.count()
        response = admin_client.post(url, {"_save": "1"})
        seen.append((model._meta.label, response.status_code))
        # 200: the form again, with its errors; 403: no add page. Nothing saved from an empty form.
        assert response.status_code in (200, 403), (model._meta.label, response.status_code)
        assert model._default_manager.count() == before, model._meta.label
    assert len(seen) > 10


@pytest.mark.django_db
@pytest.mark.parametrize("label", ["runtime.Turn", "endusers.EndUserMessage", "endusers.EndUserSession",
                                   "endusers.Identity", "kakao.KakaoUser"])
def test_rows_the_pipeline_writes_offer_no_add_page(admin_client, label):
    from django.apps import apps

    model = apps.get_model(label)
    url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/add/"
    assert admin_client.get(url).status_code == 403
    assert admin_client.post(url, {"_save": "1"}).status_code == 403
    changelist = admin_client.get(f"/admin/{model._meta.app_label}/{model._meta.model_name}/")
    assert changelist.status_code == 200 and url not in changelist.content.decode()
