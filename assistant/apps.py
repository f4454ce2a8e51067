from django.apps import AppConfig

# The /chat page's agents answer as a general assistant unless they have a prompt of their own.
ASSISTANT_SYSTEM_PROMPT = (
    "당신은 유능한 AI 어시스턴트입니다. 기본적으로 한국어로 답하고, 사용자가 영어로 물으면 영어로 답하세요. "
    "정확하고 명료하게 답하고, 필요하면 마크다운(목록, 코드 블록)을 쓰세요. 모르는 것은 모른다고 말하세요.\n"
    "You are a capable AI assistant. Answer in Korean by default, or in English when asked in English. "
    "Be accurate and clear, use markdown when it helps, and say so when you do not know."
)


class AssistantConfig(AppConfig):
    name = "assistant"
    verbose_name = "Realtime assistant"

    def ready(self):
        from assistant.delegation import commands_register, tools_register
        from assistant.images import image_parts_for_turn
        from runtime.context import system_prompt_default_register, user_parts_provider_register
        from runtime.models import Channel

        system_prompt_default_register(channel=Channel.ASSISTANT, text=ASSISTANT_SYSTEM_PROMPT)
        user_parts_provider_register(image_parts_for_turn)
        commands_register()
        tools_register()
