"""Merge one end user into another: prints the plan (direction, trust, identities moving or detached, risks);
merges only with --yes."""

from django.core.management.base import BaseCommand, CommandError

from endusers.models import EndUser
from endusers.services import end_user_merge, merge_plan
from mejai.errors import ApiError


class Command(BaseCommand):
    help = __doc__.replace("\n", " ")

    def add_arguments(self, parser):
        parser.add_argument("source", type=int, help="id of the end user that is merged away")
        parser.add_argument("target", type=int, help="id of the end user that keeps everything")
        parser.add_argument("--yes", action="store_true", help="carry out the plan (without it: only print it)")

    def handle(self, *args, source, target, yes, **options):
        users = EndUser.objects.in_bulk([source, target])
        missing = [str(pk) for pk in (source, target) if pk not in users]
        if missing:
            raise CommandError(f"No end user with id {', '.join(missing)}.")
        try:
            plan = merge_plan(source=users[source], target=users[target])
        except ApiError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(f"merge end user {source} ({plan.source_trust}) INTO {target} ({plan.target_trust})")
        for label, identities in (("moving", plan.moving), ("detached (stay with a new anonymous end user)",
                                                            plan.detached)):
            shown = ", ".join(f"{i.kind}{'' if i.verified else ' (unverified)'}" for i in identities) or "none"
            self.stdout.write(f"  identities {label}: {shown}")
        for warning in plan.warnings:
            self.stdout.write(self.style.WARNING(f"  ! {warning}"))
        if not yes:
            self.stdout.write("nothing merged: run again with --yes to merge")
            return
        try:
            kept = end_user_merge(source=users[source], target=users[target], actor="manage.py merge_end_users")
        except ApiError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(f"end user {source} merged into {kept.pk}")
