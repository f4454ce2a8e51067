"""The API explains itself: every request field and parameter has a description; the links in the
chat endpoint's description lead to pages that exist (issue 11, 6)."""

from __future__ import annotations

import re

import pytest
from drf_spectacular.generators import SchemaGenerator


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def test_every_request_field_and_parameter_has_a_description(schema):
    components = schema["components"]["schemas"]
    missing = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if not parameter.get("description"):
                    missing.append(f"{method.upper()} {path} ?{parameter['name']}")
            for media in (operation.get("requestBody") or {}).get("content", {}).values():
                name = media["schema"].get("$ref", "").rsplit("/", 1)[-1]
                for field, spec in components.get(name, {}).get("properties", {}).items():
                    if not spec.get("description"):
                        missing.append(f"{method.upper()} {path} {name}.{field}")
    assert missing == []


def test_chat_description_links_to_pages_that_exist(schema, client):
    description = schema["paths"]["/api/runtime/chat"]["post"]["description"]
    links = re.findall(r"\]\(([^)]+)\)", description)
    assert links
    for link in links:
        path, _, anchor = link.partition("#")
        response = client.get(path)
        assert response.status_code == 200, link
        text = response.content.decode()
        headings = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                    for h in re.findall(r"^#+ (.+)$", text, re.M)}
        assert not anchor or anchor in headings, (anchor, sorted(headings))


def test_docs_pages_are_served_and_nothing_else(client):
    assert client.get("/docs/runtime")["Content-Type"].startswith("text/markdown")
    assert client.get("/docs/nope").status_code == 404
    assert client.get("/docs/..%2Fmejai%2Fsettings").status_code == 404
