"""Admin for installs: portals and their credentials. Tokens are never editable and never shown
beyond their last 4 characters; actions call the same services as the manage.py commands, from
the list (select portals) or as buttons on a portal's page."""
from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join

from portals import fanout, operations, sync
from portals.binding_state import binding_label
from portals.logging import mask
from portals.models import Credential, Portal
from portals.subscription import Subscription

# An admin request works through the portals one after another; more belongs to the commands.
ACTION_MAX_PORTALS = 50
TIMESTAMP_FORMAT = "Y-m-d H:i"

# What to tell the portal's administrator, by status: the change page shows it above the fields.
STATUS_HINTS = {
    Portal.Status.NEEDS_REAUTH: (
        "Bitrix24 refused the installer's token, so commands skip this portal (the widget still works "
        "with each user's own token). Tell the portal's administrator: \u201cPlease open our app once in "
        "Bitrix24 (Applications, then the app), or reinstall it.\u201d That stores a new token and the "
        "portal is active again."
    ),
    Portal.Status.PAYMENT_REQUIRED: (
        "The app's trial or subscription has ended on this portal: users see a page asking them to contact "
        "their administrator. Tell the portal's administrator: \u201cPlease renew the app's subscription in "
        "Bitrix24 (Applications, then the app's page).\u201d Tokens and data are kept; the payment event or "
        "Sync now brings the portal back."
    ),
}


def timestamp(value) -> str:
    """Every time in this admin looks the same: 2026-12-01 23:05, in the server's zone (UTC), with
    the zone and the ISO time on hover."""
    if not value:
        return "-"
    local = timezone.localtime(value)
    return format_html('<time datetime="{}" title="{}">{}</time>', local.isoformat(timespec="seconds"), timezone.get_current_timezone_name(),
                       date_format(local, TIMESTAMP_FORMAT))


# Badge words short enough that the list's columns fit at 1440 px; the full label is on hover.
BADGE_WORDS = {Portal.Status.NEEDS_REAUTH: "needs re-auth", Portal.Status.PAYMENT_REQUIRED: "payment due"}


def timestamp_column(field: str, description: str):
    """A list column or page field showing ``field`` with ``timestamp``, sortable by it."""

    @admin.display(description=description, ordering=field)
    def column(model_admin, obj):
        return timestamp(getattr(obj, field))

    return column


def timestamp_text(value) -> str:
    """``timestamp`` as plain text, for a title attribute."""
    return date_format(timezone.localtime(value), TIMESTAMP_FORMAT) if value else "-"


def status_badge(portal: Portal) -> str:
    label = portal.get_status_display()
    return format_html(
        '<span class="status-badge status-{}" title="{}">{}</span>',
        portal.status, f"{label}: {portal.status_detail}" if portal.status_detail else label,
        BADGE_WORDS.get(portal.status, label),
    )


def status_badge_html(text: str, css_class: str) -> str:
    return format_html('<span class="status-badge {}">{}</span>', css_class, text)


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


class DeclaredLookupsOnly:
    """ModelAdmin mixin: the changelist accepts only the lookups its own filters produce.

    Django's default lets a querystring run any lookup on a local field, so
    ``?access_token__regex=(a+)+$`` runs a catastrophic pattern over every row (on SQLite in the
    worker's own Python, tying it up) and ``__startswith`` probes stored values.
    """

    SAFE_SUFFIXES = frozenset({"", "exact", "isnull", "gte", "gt", "lte", "lt", "in", "year", "month", "day",
                               "id__exact", "id__in", "pk__exact"})

    def lookup_allowed(self, lookup, value, request=None):
        declared = [self.date_hierarchy] if self.date_hierarchy else []
        for item in self.get_list_filter(request) if request is not None else self.list_filter:
            if isinstance(item, type) and issubclass(item, admin.SimpleListFilter):
                if lookup == item.parameter_name:
                    return True
            else:
                declared.append(item[0] if isinstance(item, (list, tuple)) else item)
        for path in declared:
            if lookup == path or (lookup.startswith(path + "__") and lookup[len(path) + 2:] in self.SAFE_SUFFIXES):
                return True
        return False


@admin.register(Portal)
class PortalAdmin(DeclaredLookupsOnly, admin.ModelAdmin):
    list_display = (
        "domain", "member_id_short", "status_column", "bindings_column", "plan", "installed",
        "admin_token_expires_at",
    )
    list_filter = ("status", "bindings_ok", SubscriptionFilter, "app_status")
    search_fields = ("domain", "=member_id")
    ordering = ("domain",)
    list_per_page = 100
    # Every field is read-only and the token field is not among them: the form has no token input.
    fields = (
        "domain", "member_id", "status_column", "status_hint", "status_detail", "bindings_summary",
        "app_status", "payment_expired", "days_left", "license", "subscription_checked", "scope",
        "client_endpoint", "server_endpoint", "application_token_masked",
        "installed", "updated", "uninstalled", "admin_token_expires_at", "credentials_summary",
    )
    readonly_fields = fields
    # placements/admin.py adds the invocation columns and the bind actions to this admin.
    actions = ("sync_now", "refresh_tokens_now", "disable", "enable")
    change_form_template = "admin/portals/portal/change_form.html"

    class Media:
        css = {"all": ["portals/admin.css"]}

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

    # --- the page: read-only, with the actions as buttons ------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "POST" and "action" in request.POST:
            return self._page_action(request, object_id)
        context = {
            "show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False,
            "show_delete": False, "portal_actions": self._page_actions(request), "title": "Portal",
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, context)

    def _page_actions(self, request) -> list[dict]:
        """The list's actions as buttons: (name, short label, full description)."""
        return [
            {"name": name, "label": str(description).split(" (")[0], "description": description}
            for name, (_, _, description) in self.get_actions(request).items()
            if name != "delete_selected"
        ]

    def _page_action(self, request, object_id):
        """Run one list action on this portal alone, then come back to its page (a confirmation
        page, for the actions that ask, posts back here)."""
        actions = self.get_actions(request)
        name = request.POST.get("action", "")
        if name not in actions or name == "delete_selected" or not self.has_change_permission(request):
            raise PermissionDenied
        queryset = self.get_queryset(request).filter(pk=object_id)
        if not queryset.exists():
            return HttpResponseRedirect(reverse("admin:portals_portal_changelist"))
        function = actions[name][0]
        response = function(self, request, queryset)
        return response or HttpResponseRedirect(request.path)

    # --- columns and read-only fields ------------------------------------------------------------

    @admin.display(description="member_id", ordering="member_id")
    def member_id_short(self, obj):
        short = f"{obj.member_id[:8]}\u2026" if len(obj.member_id) > 10 else obj.member_id
        return format_html('<span class="member-id" title="{}">{}</span>', obj.member_id, short)

    @admin.display(description="status", ordering="status")
    def status_column(self, obj):
        return status_badge(obj)

    @admin.display(description="bound", ordering="bindings_ok")
    def bindings_column(self, obj):
        if obj.bindings_ok is None:
            return format_html('<span class="status-badge binding-unknown" title="{}">not checked</span>',
                               "no install, bind or sync has reported yet")
        if obj.bindings_ok:
            return format_html('<span class="status-badge binding-bound" title="checked {}">bound</span>',
                               timestamp_text(obj.bindings_checked_at))
        missing = "; ".join(f"{binding_label(k)}: {v}" for k, v in (obj.bindings_missing or {}).items())
        return format_html('<span class="status-badge binding-missing" title="{}">not bound</span>', missing)

    @admin.display(description="what to do")
    def status_hint(self, obj):
        hint = STATUS_HINTS.get(obj.status)
        if obj.status == Portal.Status.UNINSTALLED:
            hint = ("Disabled by an operator: Enable serves the widget again." if obj.status_detail == operations.DISABLED_DETAIL
                    else "The app was uninstalled in Bitrix24; installing it again brings this portal back.")
        elif not hint and obj.bindings_ok is False:
            hint = "A handler is missing on the portal: run Bind widget (the reasons are under \u201cbindings\u201d)."
        return format_html('<div class="portal-hint">{}</div>', hint) if hint else "nothing: the portal is fine"

    @admin.display(description="bindings")
    def bindings_summary(self, obj):
        if obj.bindings_ok is None:
            return "not checked yet (install, Bind widget, list_placements or sync report it)"
        missing = obj.bindings_missing or {}
        checked = timestamp(obj.bindings_checked_at)
        if not missing:
            return format_html("{} all bound (checked {})", status_badge_html("bound", "binding-bound"), checked)
        rows = format_html_join("", "<li>{}: {}</li>", ((binding_label(k), v) for k, v in missing.items()))
        return format_html("{} checked {}<ul>{}</ul>", status_badge_html("not bound", "binding-missing"), checked, rows)

    installed = timestamp_column("installed_at", "installed")
    updated = timestamp_column("updated_at", "updated")
    uninstalled = timestamp_column("uninstalled_at", "uninstalled")
    admin_token_expires_at = timestamp_column("admin_token_expires_at", "admin token expires")

    @admin.display(description="plan", ordering="days_left")
    def plan(self, obj):
        """App status and what is left of the period in one column (the list must fit 1440 px)."""
        return self.subscription(obj, with_status=True)

    @admin.display(description="trial / subscription", ordering="days_left")
    def subscription(self, obj, with_status: bool = False):
        text = Subscription.of(obj).period()
        if with_status and obj.app_status:
            text = ", ".join(part for part in (obj.get_app_status_display(), text) if part)
        text = text or "-"
        if obj.payment_expired or obj.status == Portal.Status.PAYMENT_REQUIRED:
            return format_html('<strong style="color:#ba2121">{}</strong>', text)
        if obj.app_status == Portal.AppStatus.TRIAL and obj.days_left is not None and obj.days_left <= TRIAL_ENDING_DAYS:
            return format_html('<strong style="color:#b36b00">{}</strong>', text)
        return text

    subscription_checked = timestamp_column("subscription_checked_at", "subscription checked")

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
class CredentialAdmin(DeclaredLookupsOnly, admin.ModelAdmin):
    """Read-only: who has tokens, and when they expire. The tokens themselves show masked."""

    list_display = (
        "portal_domain", "user_id", "is_admin", "access_token_masked", "expires", "refreshed", "last_used",
    )
    list_filter = ("is_admin",)
    list_select_related = ("portal",)
    search_fields = ("=portal__domain", "=portal__member_id", "=user_id")
    fields = (
        "portal", "user_id", "is_admin", "access_token_masked", "refresh_token_masked",
        "expires", "refreshed", "last_used", "created",
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

    expires = timestamp_column("expires_at", "expires")
    refreshed = timestamp_column("refreshed_at", "refreshed")
    last_used = timestamp_column("last_used_at", "last used")
    created = timestamp_column("created_at", "created")
