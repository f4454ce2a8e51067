"""Build end users, identities and timeline rows from existing sessions and turns (idempotent, resumable)."""

from django.core.management.base import BaseCommand
from tqdm import tqdm

from endusers.backfill import end_users_backfill


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=200)
        parser.add_argument("--full", action="store_true", help="re-check sessions that already have timeline rows")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, batch_size, full, no_progress, **options):
        from runtime.models import Session

        total = Session.objects.count() if full else Session.objects.filter(end_user_index__isnull=True).count()
        with tqdm(total=total, unit="session", disable=no_progress, file=self.stderr) as bar:
            stats = end_users_backfill(batch_size=batch_size, full=full, progress=bar.update)
        self.stdout.write(
            f"sessions indexed: {stats.sessions}, linked to an end user: {stats.end_users_linked}, "
            f"timeline messages written: {stats.messages}, without any identity: {stats.anonymous}, "
            f"errors: {len(stats.errors)}"
        )
        for session_id, error in stats.errors[:20]:
            self.stderr.write(f"  session {session_id}: {error}")
