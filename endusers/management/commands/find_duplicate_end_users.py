"""List end users who are probably the same person: a claimed email or phone that another end user holds verified."""

from django.core.management.base import BaseCommand

from endusers.privacy import mask_identity
from endusers.selectors import duplicate_candidates


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--organization", help="organization slug")
        parser.add_argument("--unmasked", action="store_true", help="print the values in clear")

    def handle(self, *args, organization, unmasked, **options):
        from runtime.models import Organization

        org = Organization.objects.filter(slug=organization).first() if organization else None
        if organization and org is None:
            self.stderr.write(f"no organization {organization!r}")
            return
        found = duplicate_candidates(organization=org)
        for c in found:
            value = c.value if unmasked else mask_identity(kind=c.kind, value=c.value)
            self.stdout.write(f"{c.source.pk} -> {c.target.pk}  same {c.kind} {value}  "
                              f"(merge: manage.py merge_end_users {c.source.pk} {c.target.pk})")
        self.stdout.write(f"{len(found)} candidate(s)")
