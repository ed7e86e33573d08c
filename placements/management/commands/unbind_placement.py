"""manage.py unbind_placement: placement.unbind with our handler URL, so other handlers survive."""
from placements.management.commands.bind_placement import add_placement_arguments
from portals import operations
from portals.management.commands._portal_command import PortalCommand


class Command(PortalCommand):
    help = (
        "Unbind our placement handler (placement.unbind with HANDLER) with each portal's installer "
        "token. Exit 1 if any portal failed, 2 for wrong flags."
    )

    def add_arguments(self, parser):
        self.add_selection_arguments(parser)
        add_placement_arguments(parser, title=True)
        self.add_run_arguments(parser)

    def handle(self, *args, **options):
        selection = self.select(options)
        code, handler, _ = operations.placement_defaults(
            placement=options["placement"], handler=options["handler"], title=options["title"]
        )
        if options["dry_run"]:
            return self.dry_run(selection=selection, describe=lambda portal: f"unbind {code} -> {handler}")
        self.run(
            what=f"unbind_placement {code}",
            selection=selection,
            work=lambda portal, pace: operations.portal_unbind_placement(
                portal=portal, placement=code, handler=handler
            ),
            options=options,
        )
