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
    help = "Run the Mattermost (Mchat) worker: one loop per active bot; a second worker stands by."

    def add_arguments(self, parser):
        parser.add_argument("--bot", type=int, help="Serve only this bot (its id).")

    def handle(self, *args, bot=None, **options):
        # The worker's own log lines (connects, resumes, gaps, 401s) at INFO whatever the root level.
        logging.getLogger("mchat").setLevel(os.environ.get("MCHAT_LOG_LEVEL", "INFO").upper())
        try:
            bootstrapped = services.bot_bootstrap_from_env()
        except ApiError as exc:
            raise CommandError(exc.message) from None
        if bootstrapped is not None:
            self.stdout.write(f"mchat: bot {bootstrapped.pk} configured from MCHAT_URL ({bootstrapped.server_url})")
        bots = services.bots_for_worker(bot_id=bot)
        if not bots:
            raise CommandError("No active Mattermost bot: add one in the admin, or set MCHAT_URL and MCHAT_BOT_TOKEN.")
        self.stdout.write("mchat: serving bot(s) " + ", ".join(f"{b.pk} ({b.name})" for b in bots))
        asyncio.run(self._run(bots))

    async def _run(self, bots) -> None:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, main.cancel)
        try:
            await workers_run(bots)
        except asyncio.CancelledError:
            logger.info("mchat worker stopping")
