"""Versioned prompts: one active version, activation and rollback from the API, audited, used by the pipeline."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from runtime import prompts
from runtime.models import PromptAudit, PromptVersion


def auth(key):
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def test_first_version_is_active_and_new_versions_wait(organization):
    template = prompts.prompt_template_get_or_create(organization=organization, name="support")
    v1 = prompts.prompt_version_create(template=template, text="첫 번째 프롬프트")
    v2 = prompts.prompt_version_create(template=template, text="두 번째 프롬프트")
    assert (v1.version, v2.version) == (1, 2)
    assert list(template.versions.filter(is_active=True)) == [v1]


def test_database_refuses_two_active_versions(organization):
    template = prompts.prompt_template_get_or_create(organization=organization, name="support")
    prompts.prompt_version_create(template=template, text="a")
    v2 = prompts.prompt_version_create(template=template, text="b")
    with pytest.raises(IntegrityError), transaction.atomic():
        PromptVersion.objects.filter(pk=v2.pk).update(is_active=True)


def test_activate_and_roll_back_through_the_api(client, api_key, organization):
    created = client.post("/api/runtime/prompts", {"name": "support", "text": "v1"}, content_type="application/json", **auth(api_key))
    assert created.status_code == 201 and created.json()["is_active"] is True
    v2 = client.post("/api/runtime/prompts", {"name": "support", "text": "v2"}, content_type="application/json", **auth(api_key)).json()
    assert v2["is_active"] is False
    activated = client.post(f"/api/runtime/prompt-versions/{v2['id']}/activate", **auth(api_key))
    assert activated.json()["is_active"] is True
    template_id = PromptVersion.objects.get(pk=v2["id"]).template_id
    rolled = client.post(f"/api/runtime/prompts/{template_id}/rollback", **auth(api_key)).json()
    assert rolled["version"] == 1 and rolled["is_active"] is True
    actions = list(PromptAudit.objects.order_by("created_at", "pk").values_list("action", flat=True))
    assert actions == ["create", "activate", "create", "activate", "rollback"]
    listing = client.get("/api/runtime/prompts", **auth(api_key)).json()
    assert [v["version"] for v in listing[0]["versions"]] == [2, 1]


def test_prompt_api_bad_input(client, api_key, other_api_key):
    assert client.post("/api/runtime/prompts", {"name": "x", "text": "  "}, content_type="application/json", **auth(api_key)).status_code == 400
    assert client.post("/api/runtime/prompts", {"name": "bad name!", "text": "t"}, content_type="application/json", **auth(api_key)).status_code == 400
    theirs = client.post("/api/runtime/prompts", {"name": "theirs", "text": "t"}, content_type="application/json", **auth(other_api_key)).json()
    response = client.post(f"/api/runtime/prompt-versions/{theirs['id']}/activate", **auth(api_key))
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    template_id = PromptVersion.objects.get(pk=theirs["id"]).template_id
    assert client.post(f"/api/runtime/prompts/{template_id}/rollback", **auth(other_api_key)).status_code == 409


def test_pipeline_uses_the_active_version(client, api_key, agent, fake_llm):
    template = prompts.prompt_template_get_or_create(organization=agent.organization, name="support")
    prompts.prompt_version_create(template=template, text="당신은 환불 담당입니다.")
    v2 = prompts.prompt_version_create(template=template, text="당신은 배송 담당입니다.", activate=True)
    agent.prompt = template
    agent.save()
    body = client.post("/api/runtime/chat", {"message": "안녕"}, content_type="application/json", **auth(api_key)).json()
    assert fake_llm.requests[-1]["messages"][0]["content"].startswith("당신은 배송 담당입니다.")
    assert body["usage"]["prompt_version"] == v2.pk
