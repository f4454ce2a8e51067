"""List end users who may be the same person: a claimed email or phone that another end user holds verified.

A claim is typed, not proven: such matches are listed as unverified claims, never as merge
proposals. Merge only with proof of ownership, and read the plan `merge_end_users` prints.
"""

from django.core.management.base import BaseCommand

from endusers.privacy import mask_identity
from endusers.selectors import duplicate_candidates


class Command(BaseCommand):
    help = __doc__.splitlines()[0]

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
        proposals = [c for c in found if c.proven]
        claims = [c for c in found if not c.proven]
        for c in proposals:
            value = c.value if unmasked else mask_identity(kind=c.kind, value=c.value)
            self.stdout.write(f"{c.source.pk} -> {c.target.pk}  same {c.kind} {value}  "
                              f"(plan: manage.py merge_end_users {c.source.pk} {c.target.pk})")
        if claims:
            self.stdout.write("UNVERIFIED CLAIMS (not merge proposals: a visitor typed a value a verified person "
                              "holds; merge only with proof of ownership):")
        for c in claims:
            value = c.value if unmasked else mask_identity(kind=c.kind, value=c.value)
            self.stdout.write(f"  {c.source.pk} -> {c.target.pk}  same {c.kind} {value}  [unverified claim]")
        self.stdout.write(f"{len(proposals)} merge proposal(s), {len(claims)} unverified claim(s)")
