"""Build the admin overview's daily roll-up (F_conv_daily_stats) from the stored turns: the backfill
after an upgrade, or a rebuild. Without --all only days missing or stale are rolled up."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from mejai.overview import DAYS, days_pending, rollup_day


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=DAYS,
                            help=f"closed days back from today to cover (default {DAYS}, the overview's window)")
        parser.add_argument("--all", action="store_true", help="roll up every day of the range again, even fresh ones")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, days, all, no_progress, **options):
        if days < 1:
            raise CommandError("--days must be at least 1")
        today = timezone.localdate()
        if all:
            pending = [today - timedelta(days=d) for d in range(days - 1, 0, -1)]
        else:
            pending = days_pending(today=today, days=days)
        rows = 0
        for day in tqdm(pending, unit="day", disable=no_progress, file=self.stderr):
            rows += rollup_day(day)
        self.stdout.write(f"rolled up {len(pending)} days ({rows} rows) of the {days - 1} closed days before {today}")
