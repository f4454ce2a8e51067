"""Merge one end user into another: identities, sessions, timeline and memories move to the target."""

from django.core.management.base import BaseCommand, CommandError

from endusers.models import EndUser
from endusers.services import end_user_merge
from mejai.errors import ApiError


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("source", type=int, help="id of the end user that is merged away")
        parser.add_argument("target", type=int, help="id of the end user that keeps everything")

    def handle(self, *args, source, target, **options):
        users = EndUser.objects.in_bulk([source, target])
        missing = [str(pk) for pk in (source, target) if pk not in users]
        if missing:
            raise CommandError(f"No end user with id {', '.join(missing)}.")
        try:
            kept = end_user_merge(source=users[source], target=users[target], actor="manage.py merge_end_users")
        except ApiError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(f"end user {source} merged into {kept.pk}")
