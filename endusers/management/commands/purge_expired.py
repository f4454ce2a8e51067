"""Delete turns older than the retention period (ENDUSERS_RETENTION_DAYS) with their timeline rows."""

from django.core.management.base import BaseCommand
from tqdm import tqdm

from endusers.conf import RETENTION_DAYS
from endusers.services import turns_purge_expired


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None, help=f"override the retention (default {RETENTION_DAYS})")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, days, no_progress, **options):
        days = RETENTION_DAYS if days is None else days
        if days <= 0:
            self.stdout.write("retention is off (0 days): nothing deleted")
            return
        with tqdm(unit="turn", disable=no_progress, file=self.stderr) as bar:
            counts = turns_purge_expired(days=days, progress=bar.update)
        self.stdout.write(f"older than {days} days: deleted {counts['turns']} turns and {counts['sessions']} empty sessions")
