"""manage.py list_placements: what placement.get reports on a portal, as a table."""
from placements import operations
from portals.management.commands._portal_command import PortalCommand, PortalsFailed

COLUMNS = ("placement", "handler", "title", "userId")


class Command(PortalCommand):
    help = "Show our app's placement handlers on a portal (placement.get) as a table."

    def add_arguments(self, parser):
        self.add_selection_arguments(parser, allow_all=False)

    def handle(self, *args, **options):
        selection = self.select(options)
        failed = []
        for portal in selection.portals:
            outcome = operations.portal_list_placements(portal=portal)
            if outcome.ok:
                self.stdout.write(f"{portal.domain} [{portal.member_id}]: {outcome.status}")
                self.stdout.write(format_table(outcome.rows))
            else:
                failed.append(outcome)  # said once, in the recap, with what to do
        self.recap(failed, total=len(selection.portals))
        if failed:
            raise PortalsFailed(f"{len(failed)} of {len(selection.portals)} portal(s) failed")


def format_table(rows: list[dict]) -> str:
    """Fixed-width columns, a header and a rule; '(none)' when nothing is bound."""
    if not rows:
        return "  (none)"
    cells = [[str(row.get(column, "")) for column in COLUMNS] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(COLUMNS)]
    render = lambda values: "  " + "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return "\n".join([render(COLUMNS), render(["-" * w for w in widths]), *map(render, cells)])
