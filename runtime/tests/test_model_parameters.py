"""Request parameters a server refuses (issue 9, kind 1): retry without, remember, keep the body."""

from __future__ import annotations

import json
import logging

import pytest
from django.core.exceptions import ValidationError

from runtime.clients.compat import ParameterPolicy, agent_llm_options_clean, refusal_adjust
from runtime.fakes import shapes
from runtime.models import Agent, Turn
from runtime.tests.test_chat_api import post

OPENAI_MAX_TOKENS = {"error": {
    "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
    "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}}
OPENAI_TEMPERATURE = {"error": {
    "message": "Unsupported value: 'temperature' does not support 0.2 with this model. Only the default (1) value is supported.",
    "type": "invalid_request_error", "param": "temperature", "code": "unsupported_value"}}
VLLM_STREAM_OPTIONS = {"object": "error", "message": "[{'type': 'extra_forbidden', 'loc': ('body', 'stream_options'), "
                       "'msg': 'Extra inputs are not permitted', 'input': {'include_usage': True}}]",
                       "type": "BadRequestError", "param": None, "code": 400}
PYDANTIC_422 = {"detail": [{"type": "extra_forbidden", "loc": ["body", "stream_options"], "msg": "Extra inputs are not permitted"}]}
OLLAMA_TOOLS = {"error": {"message": "registry.ollama.ai/library/gemma2:2b does not support tools", "type": "api_error",
                          "param": None, "code": None}}


def ask(client, api_key, text="질문"):
    return post(client, {"message": text}, api_key)


@pytest.mark.parametrize(
    "status,body,dropped,added",
    [
        (400, OPENAI_MAX_TOKENS, "max_tokens", "max_completion_tokens"),
        (400, OPENAI_TEMPERATURE, "temperature", None),
        (400, VLLM_STREAM_OPTIONS, "stream_options", None),
        (422, PYDANTIC_422, "stream_options", None),
        (400, OLLAMA_TOOLS, "tools", None),
    ],
    ids=["openai-max_tokens", "openai-temperature", "vllm-stream_options", "422-stream_options", "ollama-tools"],
)
def test_refused_parameter_is_dropped_and_remembered(client, api_key, fake_llm, status, body, dropped, added):
    fake_llm.script(shapes.error_answer(status, body))
    first = ask(client, api_key)
    assert first.status_code == 200, first.content
    refused, retried = fake_llm.requests
    assert dropped in refused and dropped not in retried
    if added:
        assert retried[added] == refused[dropped]
    # Remembered for this base URL and model: the next turn is one request, already without it.
    assert ask(client, api_key, "다시").status_code == 200
    assert len(fake_llm.requests) == 3 and dropped not in fake_llm.requests[-1]
    assert Turn.objects.filter(status=Turn.Status.COMPLETED).count() == 2
    assert Turn.objects.get(pk=first.json()["turn_id"]).diagnostics["parameters"]["max_tokens_parameter"] == (
        added or "max_tokens")


def test_memory_is_per_model(client, api_key, fake_llm, agent):
    fake_llm.script(shapes.error_answer(400, OPENAI_TEMPERATURE))
    assert ask(client, api_key).status_code == 200
    agent.model = "another-model"
    agent.save()
    assert ask(client, api_key).status_code == 200
    assert "temperature" in fake_llm.requests[-1] and fake_llm.requests[-1]["model"] == "another-model"


def test_two_refusals_in_a_row(client, api_key, fake_llm):
    fake_llm.script(shapes.error_answer(400, VLLM_STREAM_OPTIONS), shapes.error_answer(400, OPENAI_TEMPERATURE))
    assert ask(client, api_key).status_code == 200
    last = fake_llm.requests[-1]
    assert len(fake_llm.requests) == 3 and "stream_options" not in last and "temperature" not in last


def test_retries_are_bounded(client, api_key, fake_llm):
    fake_llm.script(shapes.error_answer(400, OPENAI_TEMPERATURE), shapes.error_answer(400, OPENAI_MAX_TOKENS),
                    shapes.error_answer(400, VLLM_STREAM_OPTIONS), shapes.error_answer(400, OLLAMA_TOOLS))
    response = ask(client, api_key)
    assert response.status_code == 502 and response.json()["error"]["code"] == "llm_error"
    assert len(fake_llm.requests) == 3  # the first try and at most two retries


def test_error_that_names_no_parameter_fails_with_masked_bounded_body(client, api_key, fake_llm, caplog):
    message = ("This model's maximum context length is 4096 tokens. However, you requested 5000 tokens. "
               "key sk-proj-abcdefghijklmnopqrstuvwx user minji@example.com " + "x" * 3000)
    fake_llm.script(shapes.error_answer(400, {"error": {"message": message, "param": "max_tokens"}}))
    with caplog.at_level(logging.WARNING, logger="runtime.clients.llm"):
        response = ask(client, api_key)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "llm_error" and "context length" not in error["message"]
    assert len(fake_llm.requests) == 1  # not a refused parameter: no retry
    turn = Turn.objects.get(pk=error["turn_id"])
    upstream = turn.diagnostics["upstream_error"]
    assert upstream["status"] == 400 and "maximum context length" in upstream["body"]
    assert "sk-proj-abcdefghijklmnopqrstuvwx" not in upstream["body"] and "minji@example.com" not in upstream["body"]
    assert len(upstream["body"]) <= 1000
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "maximum context length" in logged and "sk-proj-abcdefghijklmnopqrstuvwx" not in logged


def test_server_error_body_is_kept_too(client, api_key, fake_llm):
    fake_llm.script(shapes.error_answer(500, "upstream exploded: Bearer abcdefghijkl"))
    error = ask(client, api_key).json()["error"]
    upstream = Turn.objects.get(pk=error["turn_id"]).diagnostics["upstream_error"]
    assert upstream == {"status": 500, "body": "upstream exploded: [masked]"}


def test_agent_options_apply_up_front(client, api_key, fake_llm, agent):
    agent.llm_options = {"omit": ["temperature", "stream_options"], "max_tokens_parameter": "max_completion_tokens"}
    agent.save()
    assert ask(client, api_key).status_code == 200
    sent = fake_llm.requests[-1]
    assert "temperature" not in sent and "stream_options" not in sent and "max_tokens" not in sent
    assert sent["max_completion_tokens"] == agent.max_tokens


def test_settings_apply_to_every_agent(client, api_key, fake_llm, settings):
    settings.LLM_OMIT_PARAMETERS = ["stream_options"]
    settings.LLM_MAX_TOKENS_PARAMETER = "max_completion_tokens"
    assert ask(client, api_key).status_code == 200
    sent = fake_llm.requests[-1]
    assert "stream_options" not in sent and "max_completion_tokens" in sent
    # Without stream_options there is no usage chunk: the turn still completes, usage unknown.
    assert Turn.objects.get().tokens_in is None


@pytest.mark.parametrize(
    "value,error",
    [
        ({"omit": ["messages"]}, "may name only"),
        ({"omit": "temperature"}, "must be a list"),
        ({"max_tokens_parameter": "max_new_tokens"}, "must be one of"),
        ({"retry": True}, "unknown llm_options keys"),
        (["temperature"], "must be an object"),
    ],
)
def test_agent_llm_options_validation(organization, value, error):
    agent = Agent(organization=organization, name="x", llm_options=value)
    with pytest.raises(ValidationError) as caught:
        agent.full_clean()
    assert error in str(caught.value)


def test_agent_llm_options_clean_keeps_good_values():
    assert agent_llm_options_clean({"omit": ["tools", "tools"], "max_tokens_parameter": "max_tokens"}) == {
        "omit": ["tools"], "max_tokens_parameter": "max_tokens"}
    assert agent_llm_options_clean(None) == {}


def test_refusal_adjust_ignores_parameters_not_sent():
    policy = ParameterPolicy()
    sent = {"model": "m", "messages": [], "max_tokens": 5}
    body = json.dumps(OPENAI_TEMPERATURE)
    assert refusal_adjust(status=400, body_text=body, sent=sent, policy=policy) is None
    assert refusal_adjust(status=500, body_text=json.dumps(OPENAI_MAX_TOKENS), sent=sent, policy=policy) is None
