"""Admin for the invocation log (read-only, and fast on a table of millions of rows), and what
placements add to the portal admin: invocation columns and the bind actions.

What keeps it fast: no COUNT(*) of the whole table (a capped count, or PostgreSQL's estimate),
filters that never SELECT DISTINCT over the table or list every portal, a search that goes
through the portal and time indexes, and sorting only by time.
"""
from __future__ import annotations

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import OuterRef, Q, Subquery
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from placements import operations as placement_operations
from placements import registry
from placements.models import Invocation
from portals.admin import DeclaredLookupsOnly, PortalAdmin, timestamp
from portals.models import Portal
from portals.payload import is_ascii_number

LATEST_INVOCATIONS = 20


class CappedCountPaginator(Paginator):
    """Counts exactly up to ``exact_limit`` rows, then stops counting.

    Past the limit an unfiltered list on PostgreSQL reports the planner's row estimate
    (pg_class.reltuples); anything else reports the limit and says "more than" in the template.
    """

    exact_limit = 10_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        bounded = queryset.order_by().values("pk")[: self.exact_limit + 1].count()
        if bounded <= self.exact_limit:
            return bounded
        estimate = self._table_estimate(queryset) if not queryset.query.where else None
        if estimate and estimate > self.exact_limit:
            self.count_is_estimate = True
            return estimate
        self.count_is_lower_bound = True
        return self.exact_limit

    count_is_estimate = False
    count_is_lower_bound = False

    @staticmethod
    def _table_estimate(queryset) -> int | None:
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                           [queryset.model._meta.db_table])
            row = cursor.fetchone()
        return int(row[0]) if row and row[0] and row[0] > 0 else None


class PlacementFilter(admin.SimpleListFilter):
    """The registered placements: no SELECT DISTINCT over the table to find them."""

    title = "placement"
    parameter_name = "placement"

    def lookups(self, request, model_admin):
        return [(placement.code, placement.code) for placement in registry.all_placements()]

    def queryset(self, request, queryset):
        return queryset.filter(placement=self.value()) if self.value() else queryset


class PortalFilter(admin.SimpleListFilter):
    """A text box (domain or member_id) instead of a list of ten thousand portals."""

    title = "portal"
    parameter_name = "portal"
    template = "admin/placements/invocation/portal_filter.html"

    def lookups(self, request, model_admin):
        return ()

    def has_output(self):
        return True

    def choices(self, changelist):
        hidden = [
            (key, value)
            for key, values in changelist.params.items()
            if key not in (self.parameter_name, "p")
            for value in (values if isinstance(values, list) else [values])
        ]
        yield {
            "parameter_name": self.parameter_name,
            "value": self.value() or "",
            "hidden": hidden,
            "clear_url": changelist.get_query_string(remove=[self.parameter_name]),
        }

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        if not value:
            return queryset
        portals = Portal.objects.filter(Q(member_id=value) | Q(domain__iexact=value)).values("pk")
        return queryset.filter(portal__in=portals)


@admin.register(Invocation)
class InvocationAdmin(DeclaredLookupsOnly, admin.ModelAdmin):
    list_display = (
        "created_at", "portal_domain", "placement", "entity_id", "user_id", "outcome", "duration_ms", "lang",
        "detail",
    )
    # Time as a list filter (today, past 7 days, this month, this year): its choices need no query,
    # where a date_hierarchy runs SELECT DISTINCT over the whole table on every page (0.2 s on
    # PostgreSQL, 4 s on SQLite with a million rows: bench/run.py).
    list_filter = (PlacementFilter, "outcome", PortalFilter, ("created_at", admin.DateFieldListFilter))
    list_select_related = ("portal",)
    search_fields = ("entity_id", "portal__domain")  # see get_search_results
    search_help_text = "A task id, or a portal's domain or member_id."
    sortable_by = ("created_at",)
    ordering = ("-created_at",)
    list_per_page = 100
    show_full_result_count = False
    paginator = CappedCountPaginator
    fields = (
        "created_at", "portal", "placement", "entity_id", "user_id", "lang", "outcome", "detail", "duration_ms",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        # The list shows only the portal's domain: don't decrypt every row's application token.
        return super().get_queryset(request).select_related("portal").defer("portal__application_token")

    def get_search_results(self, request, queryset, search_term):
        """A number is a task id; anything else names portals. Each uses an index, where the
        default OR of icontains across a join would scan the whole table."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if is_ascii_number(term):
            return queryset.filter(entity_id=term), False
        portals = Portal.objects.filter(Q(member_id=term) | Q(domain__icontains=term)).values("pk")
        return queryset.filter(portal__in=portals), False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    @admin.display(description="portal")
    def portal_domain(self, obj):
        return obj.portal.domain if obj.portal else "-"


def _last_invocation_at():
    """Newest invocation of the row's portal: one lookup on the (portal, -created_at) index."""
    newest = Invocation.objects.filter(portal=OuterRef("pk")).order_by("-created_at").values("created_at")[:1]
    return Subquery(newest)


def _before(names: tuple, anchor: str, *added: str) -> tuple:
    """``names`` with ``added`` inserted before ``anchor`` (at the end if it is absent)."""
    at = names.index(anchor) if anchor in names else len(names)
    return (*names[:at], *added, *names[at:])


class PortalWithPlacementsAdmin(PortalAdmin):
    """The portal admin of ``portals`` plus what only placements know: when the widget was last
    opened, the latest invocations, and Bind/Unbind widget. ``portals`` stays unaware of them."""

    list_display = _before(PortalAdmin.list_display, "admin_token_expires_at", "last_invocation_at")
    fields = _before(PortalAdmin.fields, "admin_token_expires_at", "last_invocation_at") + ("latest_invocations",)
    readonly_fields = fields
    actions = ("bind_widget", "unbind_widget", *PortalAdmin.actions)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(last_invocation_at=_last_invocation_at())

    @admin.display(description="last invocation", ordering="last_invocation_at")
    def last_invocation_at(self, obj):
        return timestamp(obj.last_invocation_at)

    @admin.display(description=f"latest {LATEST_INVOCATIONS} invocations")
    def latest_invocations(self, obj):
        rows = Invocation.objects.filter(portal=obj).order_by("-created_at")[:LATEST_INVOCATIONS]
        url = reverse("admin:placements_invocation_changelist") + f"?portal={obj.member_id}"
        body = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((timestamp(r.created_at), r.placement, r.entity_id, r.user_id or "", r.outcome, r.detail) for r in rows),
        )
        if not body:
            return "none yet"
        return format_html(
            '<table><thead><tr><th>time</th><th>placement</th><th>task</th><th>user</th><th>outcome</th>'
            '<th>detail</th></tr></thead><tbody>{}</tbody></table><p><a href="{}">all invocations</a></p>',
            body, url,
        )

    @admin.action(
        description="Bind widget (placement.bind of every placement in B24_PLACEMENTS; already bound counts as success)",
        permissions=["change"],
    )
    def bind_widget(self, request, queryset):
        targets = placement_operations.placement_targets(placement=None, handler=None, title=None)
        self._run(
            request, queryset, verb="Bind",
            work=lambda portal, pace: placement_operations.portal_bind_placements(
                portal=portal, targets=targets, pace=pace
            ),
        )

    @admin.action(description="Unbind widget (placement.unbind of our handler only)", permissions=["change"])
    def unbind_widget(self, request, queryset):
        targets = placement_operations.placement_targets(placement=None, handler=None, title=None)
        page = self._confirmed(
            request, queryset, action="unbind_widget", title="Unbind the widget?",
            explanation=f"placement.unbind {targets.codes} with our handler {targets.handler} on each portal "
            "below. Other handlers on the placement are kept. Users stop seeing the widget.",
        )
        if page is not None:
            return page
        self._run(
            request, queryset, verb="Unbind",
            work=lambda portal, pace: placement_operations.portal_unbind_placements(
                portal=portal, targets=targets, pace=pace
            ),
        )

admin.site.unregister(Portal)
admin.site.register(Portal, PortalWithPlacementsAdmin)
