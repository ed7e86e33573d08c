"""manage.py bind_placement: placement.bind on one portal, several, or all of them."""
from placements import operations
from portals.management.commands._portal_command import PortalCommand


class Command(PortalCommand):
    help = (
        "Bind a placement handler (placement.bind) with each portal's installer token. "
        "'Already bound' counts as success. Exit 1 if any portal failed, 2 for wrong flags."
    )
    verb = "bind"

    def add_arguments(self, parser):
        self.add_selection_arguments(parser)
        parser.add_argument(
            "--placement", default=None, metavar="CODE",
            help="placement code (default: every placement in B24_PLACEMENTS, which defaults to "
            f"{operations.DEFAULT_PLACEMENT})",
        )
        parser.add_argument(
            "--handler", default=None, metavar="URL",
            help="handler URL (default: our /placements/handler/ under B24_APP_BASE_URL)",
        )
        parser.add_argument("--title", default=None, help="title shown in Bitrix24 (default: the placement's)")
        parser.add_argument("--dry-run", action="store_true", help="print what would be done; call nothing")
        self.add_run_arguments(parser)

    def handle(self, *args, **options):
        selection = self.select(options)
        targets = operations.placement_targets(
            placement=options["placement"], handler=options["handler"], title=options["title"]
        )
        if options["dry_run"]:
            return self.dry_run(
                selection=selection, describe=lambda portal: f"{self.verb} {targets.codes} -> {targets.handler}"
            )
        self.run(
            what=f"{self.verb}_placement {targets.codes}",
            selection=selection,
            work=lambda portal, pace: self.placement_work(portal=portal, targets=targets, pace=pace),
            options=options,
        )

    def placement_work(self, *, portal, targets, pace) -> operations.PortalOutcome:
        return operations.portal_bind_placements(portal=portal, targets=targets, pace=pace)
