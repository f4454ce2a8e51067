"""manage.py mchat_worker: listen to Mattermost and answer, for every active bot (or --bot ID)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from django.core.management.base import BaseCommand, CommandError

from mchat import services
from mchat.worker import workers_run
from mejai.errors import ApiError

logger = logging.getLogger("mchat.worker")


class Command(BaseCommand):
    help = ("Run the Mattermost (Mchat) worker: one loop per active bot (one active worker per bot; a second "
            "one stands by). MCHAT_URL + MCHAT_BOT_TOKEN create or update a bot at start.")

    def add_arguments(self, parser):
        parser.add_argument("--bot", type=int, help="Serve only this bot (its id).")
        parser.add_argument("--wait-for-bot", action="store_true",
                            help="With no bot configured, wait for one instead of exiting (compose).")
        parser.add_argument("--check", action="store_true",
                            help="Only say whether a bot is configured (exit 0) or not (exit 3); `make run` uses it.")

    def handle(self, *args, bot=None, wait_for_bot=False, check=False, **options):
        # The worker's own log lines (connects, resumes, gaps, 401s) at INFO whatever the root level.
        logging.getLogger("mchat").setLevel(os.environ.get("MCHAT_LOG_LEVEL", "INFO").upper())
        try:
            bootstrapped = services.bot_bootstrap_from_env()
        except ApiError as exc:
            raise CommandError(exc.message) from None
        if bootstrapped is not None:
            self.stdout.write(f"mchat: bot {bootstrapped.pk} configured from MCHAT_URL ({bootstrapped.server_url})")
        bots = services.bots_for_worker(bot_id=bot)
        if check:
            if bots:
                self.stdout.write("mchat: Mattermost bot(s) configured: " + ", ".join(
                    f"{b.name} → {b.server_url}" for b in bots))
                return
            self.stdout.write("mchat: no Mattermost bot configured (set MCHAT_URL and MCHAT_BOT_TOKEN, or add one "
                              "in the admin); the Mattermost worker is not started")
            raise SystemExit(3)
        if not bots and not wait_for_bot:
            raise CommandError("No active Mattermost bot: add one in the admin, or set MCHAT_URL and MCHAT_BOT_TOKEN.")
        if bots:
            self.stdout.write("mchat: serving bot(s) " + ", ".join(f"{b.pk} ({b.name})" for b in bots))
        asyncio.run(self._run(bot_id=bot, wait=wait_for_bot))

    async def _run(self, *, bot_id, wait) -> None:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, main.cancel)
        try:
            await workers_run(bot_id=bot_id, wait=wait)
        except asyncio.CancelledError:
            logger.info("mchat worker stopping")
