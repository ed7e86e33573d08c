"""What every operator command shares: portal selection flags, the run across portals, one line
per portal, a progress bar on a terminal, a recap of the failures with what to do about each, a
summary as the last line, and the exit statuses of ARCHITECTURE.md (0 all ok, 1 a portal failed,
2 wrong flags / unknown portal / app credentials missing).

Only failures are red; skipped portals and the progress bar are plain (Django would paint all of
stderr red). ``-v 0`` prints the recap alone; a pipe gets no colour and no progress bar.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from portals import fanout
from portals.bitrix import errors

USAGE_ERROR = 2
PORTAL_FAILED = 1
GENERIC_REMEDY = "read the reason above; run the command again for this portal once it is fixed"


def plain(text: str) -> str:
    """A style that leaves the text as it is (OutputWrapper's own default for stderr is red)."""
    return text


class PortalsFailed(CommandError):
    """Some portals failed and the recap has said which and why: exit 1, and on the command line
    no "CommandError:" line after it (an expected outcome, not a crash)."""

    def __init__(self, message: str):
        super().__init__(message, returncode=PORTAL_FAILED)


def positive(kind):
    """An argparse type: a number of ``kind`` above 0, or a one-line usage error."""

    def parse(value: str):
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {'whole ' if kind is int else ''}number: {value!r}") from None
        if number <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0: {value!r}")
        return number

    return parse


positive_int = positive(int)


def skip_reason(portal) -> str:
    """Why ``--all`` leaves a portal out, in the words of its status."""
    return portal.get_status_display()


class ProgressBar:
    """``\\r[#####     ] 120/1000`` on a terminal's stderr; nothing when output is not a terminal."""

    width = 30

    def __init__(self, stream, total: int, enabled: bool):
        self.stream, self.total, self.enabled = stream, total, enabled and total > 0
        self.done = 0

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * (self.width + 24) + "\r", ending="", style_func=plain)
            self.stream.flush()

    def update(self, done: int) -> None:
        self.done = done
        if self.enabled:
            filled = int(self.width * done / self.total)
            self.stream.write(
                f"\r[{'#' * filled}{' ' * (self.width - filled)}] {done}/{self.total}", ending="", style_func=plain
            )
            self.stream.flush()


class PortalCommand(BaseCommand):
    """Base of the operator commands; subclasses add flags and call ``run`` with a service."""

    requires_app_credentials = True
    # --all leaves payment_required portals out as skipped lines, unless the command is the one
    # that can bring them back (sync_portals reads app.info).
    selects_unpaid_portals = False

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        def one_line_error(message):
            # Django's parser exits 2 on the command line but raises a plain CommandError
            # (status 1) under call_command; both become one line and status 2 here.
            if parser.called_from_command_line:
                parser.exit(USAGE_ERROR, f"{parser.prog}: error: {message} (see --help)\n")
            raise CommandError(f"Error: {message}", returncode=USAGE_ERROR)

        parser.error = one_line_error
        return parser

    def add_selection_arguments(self, parser, *, allow_all: bool = True) -> None:
        parser.add_argument(
            "--portal", action="append", default=[], metavar="ID_OR_DOMAIN",
            help="a portal's member_id or domain; may be repeated",
        )
        if allow_all:
            parser.add_argument(
                "--all", action="store_true", dest="all_portals",
                help="every active portal (portals needing re-authorisation or payment are listed as skipped)",
            )

    def add_run_arguments(self, parser) -> None:
        parser.add_argument(
            "--concurrency", type=positive_int, default=fanout.DEFAULT_CONCURRENCY,
            help=f"portals worked on at once (default {fanout.DEFAULT_CONCURRENCY})",
        )
        parser.add_argument(
            "--rate", type=positive(float), default=fanout.DEFAULT_PER_PORTAL_RATE,
            help="most requests a second to any one portal (default 2, Bitrix24's drain rate)",
        )
        parser.add_argument(
            "--queue", action="store_true",
            help="hand each portal to the Celery workers (one task per portal, CELERY_BROKER_URL) "
            "instead of working here: a run over 100,000 portals spreads over every worker machine",
        )

    verbosity = 1

    def execute(self, *args, **options):
        self.verbosity = int(options.get("verbosity", 1))
        try:
            return super().execute(*args, **options)
        except PortalsFailed:
            if self._called_from_command_line:
                sys.exit(PORTAL_FAILED)  # the recap was the message; Django would add "CommandError: ..."
            raise
        except (fanout.UnknownPortal, fanout.SelectionRequired, errors.NotConfigured) as exc:
            message = exc.description if isinstance(exc, errors.BitrixError) else str(exc)
            raise CommandError(message, returncode=USAGE_ERROR) from None

    # --- the steps a handle() strings together ------------------------------------------------

    def require_app_credentials(self) -> None:
        if not settings.B24_CLIENT_ID or not settings.B24_CLIENT_SECRET:
            raise CommandError(
                "B24_CLIENT_ID and B24_CLIENT_SECRET must be set (the app's OAuth credentials)",
                returncode=USAGE_ERROR,
            )

    def select(self, options) -> fanout.Selection:
        if self.requires_app_credentials:
            self.require_app_credentials()
        return fanout.portals_select(
            portal_names=options.get("portal") or [], select_all=options.get("all_portals", False),
            include_payment_required=self.selects_unpaid_portals,
        )

    def outcome_line(self, outcome: fanout.PortalOutcome) -> str:
        mark = "ok" if outcome.ok else ("skipped" if outcome.skipped else "FAILED")
        text = f"{mark:<7} {outcome.portal.domain} [{outcome.portal.member_id}] {outcome.status}"
        return f"{text}: {outcome.detail}" if outcome.detail else text

    def write_outcome(self, outcome: fanout.PortalOutcome) -> None:
        """One portal's line: red if it failed, plain otherwise; nothing at -v 0 (the recap has it)."""
        if self.verbosity >= 1:
            self.stdout.write(self.outcome_line(outcome), style_func=self.style.ERROR if outcome.failed else plain)

    def run(self, *, what: str, selection: fanout.Selection, work, options) -> list[fanout.PortalOutcome]:
        """Run ``work`` over the selection, print a line per portal, the recap and the summary, and
        end with status 1 if any portal failed (after every other portal has had its turn).
        With ``--queue`` each portal becomes a task that runs this command on a worker."""
        if options.get("queue"):
            self.queue(what=what, selection=selection, options=options)
            return []
        started = time.monotonic()
        skipped = [
            fanout.PortalOutcome(portal, "skipped", False, f"{skip_reason(portal)}; not called")
            for portal in selection.skipped
        ]
        # The bar counts what the summary counts: the skipped portals are done from the start.
        progress = ProgressBar(self.stderr, len(skipped) + len(selection.portals),
                               self.stderr.isatty() and self.verbosity >= 1)
        for outcome in skipped:
            self.write_outcome(outcome)
        progress.update(len(skipped))

        def on_result(outcome, done, total):
            progress.clear()
            self.write_outcome(outcome)
            progress.update(len(skipped) + done)

        outcomes = fanout.run_across_portals(
            portals=selection.portals, work=work, concurrency=options["concurrency"],
            per_portal_rate=options["rate"], on_result=on_result,
        )
        progress.clear()
        self.summarise(what=what, outcomes=skipped + outcomes, seconds=time.monotonic() - started)
        return outcomes

    def queue(self, *, what: str, selection: fanout.Selection, options) -> None:
        """One ``portals.tasks.portal_command`` task per selected portal: the worker runs this same
        command on that portal alone (its line is in the worker's log), so the work, its pacing
        and the portal's shared request budget are exactly a run here."""
        from bitrix_widget.celery import publish
        from portals.tasks import portal_command, queued_command_options

        if not settings.CELERY_BROKER_URL:
            raise CommandError("--queue needs CELERY_BROKER_URL (the workers' broker)", returncode=USAGE_ERROR)
        name = type(self).__module__.rsplit(".", 1)[-1]
        own = queued_command_options(options)
        for portal in selection.portals:
            publish(portal_command, (name, portal.member_id, own))
        self.stdout.write(
            f"{what}: {len(selection.portals)} portal(s) queued for the workers"
            + (f", {len(selection.skipped)} skipped" if selection.skipped else "")
        )

    def summarise(self, *, what: str, outcomes, seconds: float) -> None:
        """The recap of the failures (if any), then the counts as the last line; PortalsFailed
        (exit 1) when a portal failed."""
        failed = [outcome for outcome in outcomes if outcome.failed]
        self.recap(failed, total=len(outcomes))
        if self.verbosity >= 1:
            counts = Counter(outcome.status for outcome in outcomes)
            parts = ", ".join(f"{count} {status}" for status, count in counts.items()) or "nothing to do"
            self.stdout.write(f"{what}: {len(outcomes)} portal(s) in {seconds:.1f} s: {parts}")
        if failed:
            raise PortalsFailed(f"{len(failed)} of {len(outcomes)} portal(s) failed")

    def recap(self, failed: list[fanout.PortalOutcome], *, total: int) -> None:
        """Each failed portal once more, together, with its reason and what to do about it."""
        if not failed:
            return
        self.stdout.write(f"{len(failed)} of {total} portal(s) failed; what to do:", style_func=self.style.ERROR)
        for outcome in failed:
            reason = f"{outcome.status}: {outcome.detail}" if outcome.detail else outcome.status
            self.stdout.write(f"  {outcome.portal.domain} [{outcome.portal.member_id}] {reason}",
                              style_func=self.style.ERROR)
            self.stdout.write(f"    -> {outcome.remedy or GENERIC_REMEDY}", style_func=plain)

    def dry_run(self, *, selection: fanout.Selection, describe) -> None:
        """Print what would be done and call nothing."""
        for portal in selection.skipped:
            self.stdout.write(f"skip    {portal.domain} [{portal.member_id}] {skip_reason(portal)}")
        for portal in selection.portals:
            note = "" if portal.status == portal.Status.ACTIVE else f" (but it is {portal.status}: reported, not called)"
            self.stdout.write(f"would   {portal.domain} [{portal.member_id}] {describe(portal)}{note}")
        self.stdout.write(
            f"dry run: {len(selection.portals)} portal(s) selected, {len(selection.skipped)} skipped; "
            "nothing was called"
        )
