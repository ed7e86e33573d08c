"""manage.py drain_offline_events: run the offline-queue consumer now, on one portal or all."""
from events.offline import offline_drain
from portals.fanout import PortalOutcome, outcome_failed
from portals.management.commands._portal_command import PortalCommand


def portal_drain(portal, pace=None) -> PortalOutcome:
    try:
        outcome = offline_drain(portal=portal)
    except Exception as exc:  # one portal's failure is its line
        return outcome_failed(portal, exc)
    if outcome.busy:
        return PortalOutcome(portal, "busy", True, outcome.describe())
    return PortalOutcome(portal, "drained", outcome.flagged == 0, outcome.describe())


class Command(PortalCommand):
    help = (
        "Read each portal's offline event queue (clear=0 under a stored process_id), process the "
        "records, clear what succeeded and flag what failed for a later retry; the doorbell and "
        "the periodic sweep run the same consumer. --queue hands each portal to the Celery "
        "workers instead. Exit 1 if any portal failed or left records flagged, 2 for wrong flags."
    )

    def add_arguments(self, parser):
        self.add_selection_arguments(parser)
        self.add_run_arguments(parser)

    def handle(self, *args, **options):
        selection = self.select(options)
        self.run(what="drain_offline_events", selection=selection, work=portal_drain, options=options)
