"""manage.py prune_invocations: delete old Invocation rows in batches, so no long lock is held."""
import datetime as dt

from django.utils import timezone

from placements.operations import invocations_prune
from portals.management.commands._portal_command import PortalCommand, positive_int


class Command(PortalCommand):
    help = "Delete invocation rows older than N days, a batch at a time (default 10,000 rows per DELETE)."
    requires_app_credentials = False

    def add_arguments(self, parser):
        parser.add_argument("--older-than-days", type=positive_int, required=True, metavar="N")
        parser.add_argument("--batch-size", type=positive_int, default=10_000, metavar="ROWS")

    def handle(self, *args, **options):
        cutoff = timezone.now() - dt.timedelta(days=options["older_than_days"])
        deleted = invocations_prune(cutoff=cutoff, batch_size=options["batch_size"], report=self.stdout.write)
        self.stdout.write(
            f"prune_invocations: deleted {deleted} invocation(s) created before {cutoff:%Y-%m-%d %H:%M} UTC"
        )

