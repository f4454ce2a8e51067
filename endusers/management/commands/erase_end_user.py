"""Erase one end user's personal data (identities, memories, message texts), keeping anonymous counts and an audit."""

from django.core.management.base import BaseCommand, CommandError

from endusers.models import EndUser
from endusers.services import end_user_erase


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("end_user", type=int)
        parser.add_argument("--actor", default="manage.py erase_end_user", help="who asked (kept in the audit)")

    def handle(self, *args, end_user, actor, **options):
        user = EndUser.objects.filter(pk=end_user).first()
        if user is None:
            raise CommandError(f"No end user with id {end_user}.")
        record = end_user_erase(end_user=user, actor=actor)
        self.stdout.write(f"end user {end_user} erased: {record.counts}")
