"""Admin for the invocation log: read-only, and fast on a table of millions of rows.

What keeps it fast: no COUNT(*) of the whole table (a capped count, or PostgreSQL's estimate),
filters that never SELECT DISTINCT over the table or list every portal, a search that goes
through the portal and time indexes, and sorting only by time.
"""
from __future__ import annotations

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Q
from django.utils.functional import cached_property

from placements import registry
from placements.models import Invocation
from portals.models import Portal


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
class InvocationAdmin(admin.ModelAdmin):
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
        if term.isdigit():
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
