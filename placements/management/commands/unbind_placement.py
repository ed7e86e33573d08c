"""manage.py unbind_placement: placement.unbind with our handler URL, so other handlers survive."""
from placements import operations
from placements.management.commands.bind_placement import Command as BindPlacementCommand


class Command(BindPlacementCommand):
    help = (
        "Unbind our placement handler (placement.unbind with HANDLER) with each portal's installer "
        "token; 'was not bound' counts as success. Exit 1 if any portal failed, 2 for wrong flags."
    )
    verb = "unbind"

    def placement_work(self, *, portal, targets, pace) -> operations.PortalOutcome:
        return operations.portal_unbind_placements(portal=portal, targets=targets, pace=pace)
