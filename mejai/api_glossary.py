"""Descriptions of the API's request fields and parameters, by name: one vocabulary for every endpoint.

A drf-spectacular postprocessing hook (`descriptions_fill`) gives each request-body field and each
parameter of the OpenAPI schema the description of its name here, unless its serializer field already
has a `help_text`. `tests/test_api_docs.py` fails when a field or parameter has none.
"""

from __future__ import annotations

GLOSSARY = {
    # identities and ids
    "contact_id": "Id of one of your organization's contacts (end users).",
    "memory_id": "Id of one of the contact's memories (see `GET …/memories`).",
    "session_id": "A conversation's id (the `session_id` of an earlier answer).",
    "task_id": "Id of a Kakao callback task.",
    "template_id": "Id of a prompt (template).",
    "version_id": "Id of one version of a prompt.",
    "external_id": "Your stable id of the end user; sent with your key, it counts as verified.",
    "email": "An email address (normalized: lower-case domain).",
    "phone": "A phone number, e.g. 010-1234-5678 or +82 10 1234 5678 (normalized to E.164).",
    "display_name": "The name to show for the contact (at most 100 characters).",
    "name": "A name; for prompts a slug (letters, digits, - and _).",
    # paging and search
    "limit": "How many results per page (1–200, default 50; memory search: 1–50, default 10). Anything else is 400.",
    "offset": "How many results to skip (0–1,000,000,000). Anything else is 400.",
    "q": "Search text (at most 200 characters).",
    "status": "Filter by status; comma-separated values allowed.",
    "format": "Response format: `json` (default) or `sse` where the endpoint streams.",
    # memories and prompts
    "text": "The text (a memory: at most 1,000 characters; a prompt: at most 50,000).",
    "kind": "What the memory is: `fact`, `preference` or `profile`.",
    "note": "A short note for the history (at most 200 characters).",
    "activate": "true: make this version the active one at once.",
    # auth
    "username": "A staff user's username.",
    "password": "That user's password.",
    "refresh": "The refresh token from `POST /api/auth/token`.",
    # widget
    "public_key": "The widget's public key from the install snippet (`mw_pk_…`).",
    "message": "The visitor's message.",
    "client_message_id": "Your id of this message (idempotency): a retry returns the same turn, never a second answer.",
    "context": "Page context: `url`, `title`, `referrer`, `locale`.",
    "type": "Event type: `load`, `open`, `close`, `cta_click`, `form_submit`, `page_view`.",
    "payload": "Event data (a JSON object; a form submit's `values`).",
    "origin": "The host page's origin (scheme://host[:port]); must be allowed for the widget.",
    "page_url": "The host page's URL (http or https).",
    "referrer": "The host page's referrer.",
    "locale": "The visitor's language (`ko` or `en`); the widget's default otherwise.",
    "visitor": "The visitor: `{id}` (random, kept by the page) and optionally a signed `user_id`, `name`, `email`.",
    "ticket": "A one-time stream ticket from `POST /api/widget/stream-ticket`.",
    "last_event_id": "The last event id received, to resume a stream (or the `Last-Event-ID` header).",
}


def descriptions_fill(result, generator, request, public):
    """drf-spectacular postprocessing hook: fill missing descriptions from GLOSSARY."""
    schemas = result.get("components", {}).get("schemas", {})
    request_components = set()
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                if not parameter.get("description") and parameter.get("name") in GLOSSARY:
                    parameter["description"] = GLOSSARY[parameter["name"]]
            for media in (operation.get("requestBody") or {}).get("content", {}).values():
                ref = (media.get("schema") or {}).get("$ref", "")
                if ref:
                    request_components.add(ref.rsplit("/", 1)[-1])
    for name in request_components:
        for field, spec in schemas.get(name, {}).get("properties", {}).items():
            if not spec.get("description") and field in GLOSSARY:
                spec["description"] = GLOSSARY[field]
    return result
