"""The inbox in the admin: filter by portal, name, status; Retry puts failed events back."""
from __future__ import annotations

from django.contrib import admin, messages

from events.models import Event, OfflineBatch
from events.services import events_retry
from portals.admin import DeclaredLookupsOnly


@admin.register(Event)
class EventAdmin(DeclaredLookupsOnly, admin.ModelAdmin):
    list_display = (
        "received_at", "name", "object_id", "portal_domain", "source", "status", "attempts", "short_error", "processed_at",
    )
    list_filter = ("status", "name", "source", ("portal", admin.RelatedOnlyFieldListFilter))
    search_fields = ("=object_id", "portal__domain", "=portal__member_id")
    list_select_related = ("portal",)
    list_per_page = 100
    show_full_result_count = False  # COUNT(*) over millions of events on every page is slow
    fields = (
        "portal", "name", "object_id", "source", "delivery", "status", "attempts", "error", "outcome",
        "data", "received_at", "next_attempt_at", "processed_at",
    )
    readonly_fields = fields
    actions = ("retry",)

    def has_add_permission(self, request):
        return False  # events arrive from Bitrix24

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="portal", ordering="portal__domain")
    def portal_domain(self, obj):
        return obj.portal.domain  # the member_id is in the portal filter and on the event's page

    @admin.display(description="error")
    def short_error(self, obj):
        return (obj.error[:80] + "…") if len(obj.error) > 80 else obj.error

    @admin.action(description="Retry the selected events")
    def retry(self, request, queryset):
        count = events_retry(event_ids=queryset.values_list("pk", flat=True))
        skipped = queryset.count() - count
        text = f"{count} event(s) queued again."
        if skipped:
            text += f" {skipped} already done, left as they are."
        self.message_user(request, text, messages.SUCCESS)


@admin.register(OfflineBatch)
class OfflineBatchAdmin(DeclaredLookupsOnly, admin.ModelAdmin):
    """Reservations of portals' offline queues that are being processed (or were interrupted)."""

    list_display = ("portal", "process_id", "error_pass", "created_at")
    list_select_related = ("portal",)
    readonly_fields = ("portal", "process_id", "error_pass", "created_at")

    def has_add_permission(self, request):
        return False
