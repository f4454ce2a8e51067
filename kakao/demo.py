"""Demo data: a Kakao bot for the demo organization, and how to call its skill."""

from __future__ import annotations

from django.conf import settings

from kakao.models import KakaoBot

DEMO_BOT_ID = "000000000000000000000de0"


def demo_setup(*, organization, agent) -> list[str]:
    bot, _ = KakaoBot.objects.get_or_create(
        bot_id=DEMO_BOT_ID, defaults={"organization": organization, "agent": agent, "name": "데모 카카오 봇"},
    )
    base = settings.PUBLIC_BASE_URL
    if not bot.is_active:
        # The operator turned the demo bot off: say so instead of a curl that answers 403 (and leave it off).
        return [f"  Kakao:     데모 봇 꺼짐: 관리자에서 켜면 동작 · the demo bot is deactivated "
                f"(turn it on in admin: {base}/admin/kakao/kakaobot/{bot.pk}/change/)"]
    body = ('{"userRequest":{"utterance":"내 이름은 민수야","user":{"id":"demo-user"}},'
            f'"bot":{{"id":"{bot.bot_id}"}}}}')
    return [
        f"  Kakao:     skill URL {base}/kakao/skill   header {bot.secret_header_name}: {bot.secret_header_value}",
        f"  try:       curl -s {base}/kakao/skill -H '{bot.secret_header_name}: {bot.secret_header_value}' "
        f"-H 'Content-Type: application/json' -d '{body}'",
    ]
