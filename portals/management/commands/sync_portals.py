"""manage.py sync_portals: keep every portal in step with what the app declares."""
from portals import sync
from portals.management.commands._portal_command import PortalCommand


class Command(PortalCommand):
    help = (
        "Compare each portal with what the app declares (placement.get, event.get, app.info in one "
        "batch), bind what is missing and store the trial or subscription status. Never unbinds; "
        "a second run binds nothing. Unpaid portals are read too (a renewal brings them back). "
        "Exit 1 if any portal failed, 2 for wrong flags."
    )

    selects_unpaid_portals = True

    def add_arguments(self, parser):
        self.add_selection_arguments(parser)
        parser.add_argument(
            "--dry-run", action="store_true",
            help="read each portal and print what would be bound; bind and store nothing",
        )
        self.add_run_arguments(parser)

    def handle(self, *args, **options):
        selection = self.select(options)
        dry_run = options["dry_run"]
        self.run(
            what="sync_portals" + (" (dry run: nothing bound or stored)" if dry_run else ""),
            selection=selection,
            work=lambda portal, pace: sync.portal_sync(portal=portal, dry_run=dry_run, pace=pace),
            options=options,
        )
