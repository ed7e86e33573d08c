"""manage.py refresh_tokens: keep refresh tokens alive on idle portals (they lapse when unused)."""
from portals import operations
from portals.management.commands._portal_command import PortalCommand, positive_int
from portals.models import Portal


class Command(PortalCommand):
    help = (
        "Refresh stored tokens now (each refresh token is spent once). With --idle-days N only "
        "credentials neither used nor refreshed for N days. A refusal of the installer's token "
        "marks the portal needs_reauth. Exit 1 if any portal failed, 2 for wrong flags."
    )

    def add_arguments(self, parser):
        self.add_selection_arguments(parser)
        parser.add_argument(
            "--idle-days", type=positive_int, default=None, metavar="N",
            help="only credentials neither used nor refreshed in the last N days",
        )
        self.add_run_arguments(parser)

    def handle(self, *args, **options):
        selection = self.select(options)
        idle_days = options["idle_days"]
        if options.get("all_portals") and idle_days is not None and not options["portal"]:
            # Thousands of portals, few of them idle: work only on those with an idle credential.
            idle = set(
                operations.idle_credentials(idle_days=idle_days)
                .filter(portal__status=Portal.Status.ACTIVE)
                .values_list("portal_id", flat=True)
                .distinct()
            )
            selection.portals = [portal for portal in selection.portals if portal.pk in idle]
        self.run(
            what="refresh_tokens",
            selection=selection,
            work=lambda portal, pace: operations.portal_refresh_tokens(
                portal=portal, idle_days=idle_days, pace=pace
            ),
            options=options,
        )
