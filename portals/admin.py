"""Admin for installs: portals and their credentials. Tokens are never editable and never shown
beyond their last 4 characters; actions call the same services as the manage.py commands."""
from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from portals import fanout, operations, sync
from portals.logging import mask
from portals.models import Credential, Portal
from portals.subscription import Subscription

# An admin request works through the portals one after another; more belongs to the commands.
ACTION_MAX_PORTALS = 50


def _admin_token_expires_at():
    """Expiry of the installer's credential (the same one Portal.admin_credential picks)."""
    admin_credential = (
        Credential.objects.filter(portal=OuterRef("pk"), is_admin=True)
        .order_by("-refreshed_at", "-id")
        .values("expires_at")[:1]
    )
    return Subquery(admin_credential)


# A trial with this many days left or fewer is "ending" in the admin's filter.
TRIAL_ENDING_DAYS = 7


class SubscriptionFilter(admin.SimpleListFilter):
    """Trials about to end and subscriptions that are over, at a glance (app.info, protocol 15)."""

    title = "subscription"
    parameter_name = "subscription"

    def lookups(self, request, model_admin):
        return (
            ("trial_ending", f"trial ending ({TRIAL_ENDING_DAYS} days or fewer)"),
            ("trial", "trial"),
            ("expired", "expired (app.info PAYMENT_EXPIRED)"),
            ("payment_required", "payment required (Bitrix24 refuses calls)"),
            ("paid", "paid or subscription"),
            ("unknown", "status unknown"),
        )

    def queryset(self, request, queryset):
        value = self.value()
        if value == "trial_ending":
            return queryset.filter(
                app_status=Portal.AppStatus.TRIAL, days_left__lte=TRIAL_ENDING_DAYS, payment_expired=False
            )
        if value == "trial":
            return queryset.filter(app_status=Portal.AppStatus.TRIAL)
        if value == "expired":
            return queryset.filter(payment_expired=True)
        if value == "payment_required":
            return queryset.filter(status=Portal.Status.PAYMENT_REQUIRED)
        if value == "paid":
            return queryset.filter(app_status__in=[Portal.AppStatus.PAID, Portal.AppStatus.SUBSCRIPTION])
        if value == "unknown":
            return queryset.filter(app_status="")
        return queryset


@admin.register(Portal)
class PortalAdmin(admin.ModelAdmin):
    list_display = (
        "domain", "member_id", "status", "app_status", "subscription", "installed_at", "updated_at",
        "admin_token_expires_at",
    )
    list_filter = ("status", SubscriptionFilter, "app_status")
    search_fields = ("domain", "=member_id")
    ordering = ("domain",)
    list_per_page = 100
    # Every field is read-only and the token field is not among them: the form has no token input.
    fields = (
        "domain", "member_id", "status", "status_detail", "app_status", "payment_expired", "days_left",
        "license", "subscription_checked_at", "scope",
        "client_endpoint", "server_endpoint", "application_token_masked",
        "installed_at", "updated_at", "uninstalled_at",
        "admin_token_expires_at", "credentials_summary",
    )
    readonly_fields = fields
    # placements/admin.py adds the invocation columns and the bind actions to this admin.
    actions = ("sync_now", "refresh_tokens_now", "disable", "enable")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(admin_token_expires_at=_admin_token_expires_at())
        )

    def has_add_permission(self, request):
        return False  # portals arrive by installing the app in Bitrix24

    def has_delete_permission(self, request, obj=None):
        return False  # use "Disable"; a delete would also drop the portal's invocation log

    # --- columns and read-only fields ------------------------------------------------------------

    @admin.display(description="admin token expires", ordering="admin_token_expires_at")
    def admin_token_expires_at(self, obj):
        return obj.admin_token_expires_at

    @admin.display(description="trial / subscription", ordering="days_left")
    def subscription(self, obj):
        text = Subscription.of(obj).period() or "-"
        if obj.payment_expired or obj.status == Portal.Status.PAYMENT_REQUIRED:
            return format_html('<strong style="color:#ba2121">{}</strong>', text)
        if obj.app_status == Portal.AppStatus.TRIAL and obj.days_left is not None and obj.days_left <= TRIAL_ENDING_DAYS:
            return format_html('<strong style="color:#b36b00">{}</strong>', text)
        return text

    @admin.display(description="application token")
    def application_token_masked(self, obj):
        return mask(obj.application_token) or "-"

    @admin.display(description="credentials")
    def credentials_summary(self, obj):
        url = reverse("admin:portals_credential_changelist") + f"?portal__id__exact={obj.pk}"
        return format_html('<a href="{}">{} stored</a>', url, obj.credentials.count())

    # --- actions: the services the commands use --------------------------------------------------

    def _run(self, request, queryset, work, verb: str) -> None:
        portals = list(queryset[: ACTION_MAX_PORTALS + 1])
        if len(portals) > ACTION_MAX_PORTALS:
            self.message_user(
                request,
                f"Select at most {ACTION_MAX_PORTALS} portals here; use manage.py for more.",
                messages.ERROR,
            )
            return
        outcomes = fanout.run_across_portals(portals=portals, work=work, concurrency=1)
        for outcome in outcomes:
            text = f"{verb} {outcome.portal.domain}: {outcome.status}"
            self.message_user(
                request, f"{text} ({outcome.detail})" if outcome.detail else text,
                messages.SUCCESS if outcome.ok else messages.ERROR,
            )

    def _confirmed(self, request, queryset, *, action: str, title: str, explanation: str):
        """None once the operator has confirmed, else the confirmation page to render."""
        if request.POST.get("confirm") == "yes":
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "explanation": explanation,
            "action": action,
            "portals": queryset[:ACTION_MAX_PORTALS],
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/portals/portal/confirm_action.html", context)

    @admin.action(
        description="Sync now (bind what is missing, read the subscription; never unbinds)", permissions=["change"]
    )
    def sync_now(self, request, queryset):
        self._run(
            request, queryset, verb="Sync",
            work=lambda portal, pace: sync.portal_sync(portal=portal, pace=pace),
        )

    @admin.action(description="Refresh tokens now", permissions=["change"])
    def refresh_tokens_now(self, request, queryset):
        self._run(
            request, queryset, verb="Refresh",
            work=lambda portal, pace: operations.portal_refresh_tokens(portal=portal, pace=pace),
        )

    @admin.action(
        description="Disable (stop serving the widget; tokens and bindings kept, reversible with Enable)",
        permissions=["change"],
    )
    def disable(self, request, queryset):
        page = self._confirmed(
            request, queryset, action="disable", title="Disable these portals?",
            explanation="Each portal below is set to 'uninstalled' with the detail "
            f"'{operations.DISABLED_DETAIL}': the widget is no longer served and --all commands skip it. "
            "Nothing is blanked: tokens and Bitrix24 bindings stay, and 'Enable' undoes it.",
        )
        if page is not None:
            return page
        self._run(request, queryset, verb="Disable", work=lambda portal, pace: operations.portal_disable(portal=portal))

    @admin.action(description="Enable (undo an operator's Disable)", permissions=["change"])
    def enable(self, request, queryset):
        self._run(request, queryset, verb="Enable", work=lambda portal, pace: operations.portal_enable(portal=portal))


@admin.register(Credential)
class CredentialAdmin(admin.ModelAdmin):
    """Read-only: who has tokens, and when they expire. The tokens themselves show masked."""

    list_display = (
        "portal_domain", "user_id", "is_admin", "access_token_masked", "expires_at", "refreshed_at", "last_used_at",
    )
    list_filter = ("is_admin",)
    list_select_related = ("portal",)
    search_fields = ("=portal__domain", "=portal__member_id", "=user_id")
    fields = (
        "portal", "user_id", "is_admin", "access_token_masked", "refresh_token_masked",
        "expires_at", "refreshed_at", "last_used_at", "created_at",
    )
    readonly_fields = fields

    def lookup_allowed(self, lookup, value, request=None):
        return lookup == "portal__id__exact" or super().lookup_allowed(lookup, value, request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="portal", ordering="portal__domain")
    def portal_domain(self, obj):
        return obj.portal.domain

    @admin.display(description="access token")
    def access_token_masked(self, obj):
        return mask(obj.access_token) or "-"

    @admin.display(description="refresh token")
    def refresh_token_masked(self, obj):
        return mask(obj.refresh_token) or "-"
