from django.apps import AppConfig


class KakaoConfig(AppConfig):
    name = "kakao"
    verbose_name = "Kakao channel"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from kakao import services
        from kakao.models import KakaoBot
        from runtime.commands import command_register
        from runtime.models import Channel

        command_register(
            services.NAME_COMMAND, handler=services.name_command, aliases=("name",), channels={Channel.KAKAO},
            help_ko="부를 이름 바꾸기 (/이름 홍길동)", help_en="change the name I call you (/name Alex)",
        )
        command_register(
            "답변", handler=services.held_answer_command, aliases=("answer",), channels={Channel.KAKAO},
            help_ko="준비가 늦어진 답변 받기", help_en="get an answer that took longer than usual",
        )

        from runtime.models import Agent, Organization

        def clear(**kwargs):
            from django.db import transaction

            # After the commit: a process that saw the new stamp earlier could reload the old row and
            # keep it under the new stamp for BOTS_CACHE_SECONDS.
            transaction.on_commit(lambda: services.bots_cache_clear(everywhere=True))

        # The cached bots carry their organization and agent: a change to any of them is seen by every process.
        for model in (KakaoBot, Agent, Organization):
            # weak=False: `clear` is local to ready(); a weak reference would let it be collected.
            post_save.connect(clear, sender=model, weak=False, dispatch_uid=f"kakao_bots_cache_save_{model.__name__}")
            post_delete.connect(clear, sender=model, weak=False,
                                dispatch_uid=f"kakao_bots_cache_delete_{model.__name__}")
