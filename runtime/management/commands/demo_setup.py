"""Create (or refresh) the demo organization, agent, prompt, admin login and API key; idempotent."""

from __future__ import annotations

import importlib
import secrets

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from runtime import prompts
from runtime.auth import api_key_hash, api_key_issue
from runtime.models import Agent, ApiKey, Membership, Organization

DEMO_PROMPT = (
    "당신은 'mejai 데모샵'의 친절한 AI 상담원입니다. 고객의 언어로 간결하게 답하세요. "
    "환불은 구매 후 7일 이내 가능하고, 배송은 평균 2일 걸립니다.\n"
    "You are the friendly assistant of the mejai demo shop. Answer briefly in the customer's language."
)


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args, **options):
        org, _ = Organization.objects.get_or_create(slug="demo", defaults={"name": "mejai 데모"})
        template = prompts.prompt_template_get_or_create(organization=org, name="demo-support", description="Demo agent prompt")
        if not template.versions.exists():
            prompts.prompt_version_create(template=template, text=DEMO_PROMPT, note="initial", actor_label="demo_setup")
        agent, _ = Agent.objects.get_or_create(organization=org, name="demo-support", defaults={"prompt": template})

        user_model = get_user_model()
        password_file = settings.VAR_DIR / "admin_password"
        admin = user_model.objects.filter(username="admin").first()
        if admin is None:
            password = secrets.token_urlsafe(12)
            admin = user_model.objects.create_superuser("admin", "admin@localhost", password)
            password_file.write_text(password)
            password_file.chmod(0o600)
        Membership.objects.get_or_create(user=admin, defaults={"organization": org})
        # The banner shows what works now: the saved first-run password only while it is still the admin's.
        saved = password_file.read_text().strip() if password_file.exists() else ""
        if saved and admin.check_password(saved):
            password = saved
        else:
            password = "(변경됨: 직접 정한 비밀번호 · changed since the first run: the one you set)"

        key_file = settings.VAR_DIR / "demo_api_key"
        raw_key = key_file.read_text().strip() if key_file.exists() else ""
        if not raw_key or not ApiKey.objects.filter(organization=org, key_hash=api_key_hash(raw_key),
                                                    revoked_at=None).exists():
            # No saved key, or it was revoked (or belongs to an older database): a new one that works.
            _, raw_key = api_key_issue(organization=org, name="demo")
            key_file.write_text(raw_key)
            key_file.chmod(0o600)

        # Channel apps add their demo objects (a widget allowed on localhost, …) through <app>/demo.py.
        extra_lines: list[str] = []
        for config in apps.get_app_configs():
            try:
                module = importlib.import_module(f"{config.name}.demo")
            except ModuleNotFoundError as exc:
                if exc.name != f"{config.name}.demo":
                    raise
                continue
            extra_lines += module.demo_setup(organization=org, agent=agent) or []

        base = settings.PUBLIC_BASE_URL
        self.stdout.write(self.style.SUCCESS("mejai demo is ready"))
        lines = [
            f"  admin:     {base}/admin/   login admin / {password}",
            f"  API key:   {raw_key}",
            f"  try:       curl -s {base}/api/runtime/chat -H 'Authorization: Bearer {raw_key}' "
            "-H 'Content-Type: application/json' -d '{\"message\": \"안녕하세요\"}'",
            f"  LLM:       {'OpenAI-compatible at ' + (settings.OPENAI_BASE_URL or 'api.openai.com') if (settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL) else 'offline (set OPENAI_API_KEY / OPENAI_BASE_URL for a model)'}",
            *extra_lines,
        ]
        self.stdout.write("\n".join(lines))
