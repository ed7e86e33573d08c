"""Installations of the app: one Portal per Bitrix24 portal, one Credential per (portal, user)."""
from django.db import models
from django.utils import timezone

from portals.fields import EncryptedTextField
from portals.logging import mask


class PortalQuerySet(models.QuerySet):
    def installed(self):
        """Portals a widget may be served for: active, or waiting for a new admin token."""
        return self.filter(status__in=[Portal.Status.ACTIVE, Portal.Status.NEEDS_REAUTH])

    def served(self):
        """Portals whose widget POST gets a page of their own: installed ones, and unpaid ones
        (their page asks for a renewal)."""
        return self.filter(
            status__in=[Portal.Status.ACTIVE, Portal.Status.NEEDS_REAUTH, Portal.Status.PAYMENT_REQUIRED]
        )

    def active(self):
        return self.filter(status=Portal.Status.ACTIVE)



class Portal(models.Model):
    # status_detail of a portal an operator disabled (status uninstalled, tokens kept): only an
    # operator's Enable undoes it, never an install page or event (ARCHITECTURE.md, trust rules).
    DISABLED_DETAIL = "Disabled by operator"

    class Status(models.TextChoices):
        ACTIVE = "active", "active"
        NEEDS_REAUTH = "needs_reauth", "needs re-authorisation"
        PAYMENT_REQUIRED = "payment_required", "payment required"
        UNINSTALLED = "uninstalled", "uninstalled"

    class AppStatus(models.TextChoices):
        """``app.info`` STATUS (protocol 15.1); blank when unknown, never a letter we made up."""

        LOCAL = "L", "local"
        FREE = "F", "free"
        DEMO = "D", "demo"
        TRIAL = "T", "trial"
        PAID = "P", "paid"
        SUBSCRIPTION = "S", "subscription"

    member_id = models.CharField(max_length=64, unique=True)
    domain = models.CharField(max_length=255, db_index=True)
    client_endpoint = models.URLField(max_length=255, help_text="REST base the OAuth server named.")
    server_endpoint = models.URLField(max_length=255, help_text="The trusted OAuth server's REST base.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    status_detail = models.TextField(blank=True, help_text="Why the portal is not active.")
    app_status = models.CharField(
        max_length=1, choices=AppStatus.choices, blank=True, db_index=True,
        help_text="app.info STATUS; blank when Bitrix24 sent none or a letter we do not know.",
    )
    payment_expired = models.BooleanField(
        null=True, blank=True, help_text="app.info PAYMENT_EXPIRED (Y/N); empty when unknown."
    )
    days_left = models.IntegerField(
        null=True, blank=True, help_text="app.info DAYS: days left in the trial or paid period (negative after it)."
    )
    license = models.CharField(max_length=64, blank=True, help_text="app.info LICENSE, e.g. de_pro100.")
    subscription_checked_at = models.DateTimeField(
        null=True, blank=True, help_text="When app.info was last read with the installer's token."
    )
    scope = models.CharField(max_length=1024, blank=True)
    application_token = EncryptedTextField(blank=True)
    installed_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    uninstalled_at = models.DateTimeField(null=True, blank=True)
    # What the last install, bind or sync saw of our handlers on the portal (portals/binding_state.py).
    bindings_ok = models.BooleanField(
        "bound", null=True, blank=True, help_text="Every handler the app binds was there at the last bind or sync; empty: never checked."
    )
    bindings_missing = models.JSONField(
        default=dict, blank=True, help_text="Handlers missing at the last check, each with the reason."
    )
    bindings_checked_at = models.DateTimeField(null=True, blank=True)

    objects = PortalQuerySet.as_manager()

    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return f"{self.domain} ({self.member_id})"

    @property
    def origin(self) -> str:
        """scheme://host[:port] of the stored REST endpoint: the page that frames our widget."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.client_endpoint)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def disabled_by_operator(self) -> bool:
        return self.status == Portal.Status.UNINSTALLED and self.status_detail == Portal.DISABLED_DETAIL

    def admin_credential(self):
        """The installer's credential (the one commands use), or None."""
        return (
            self.credentials.filter(is_admin=True).order_by("-refreshed_at", "-id").first()
        )


class CredentialQuerySet(models.QuerySet):
    def lease_free(self, now):
        """Credentials no worker is refreshing right now (no lease, or an expired one)."""
        return self.filter(models.Q(refresh_lease_until__isnull=True) | models.Q(refresh_lease_until__lt=now))


class Credential(models.Model):
    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="credentials")
    user_id = models.PositiveBigIntegerField()
    access_token = EncryptedTextField(blank=True)
    refresh_token = EncryptedTextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    is_admin = models.BooleanField(default=False)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # The refresh lease (portals/tokens.py): who is spending the refresh token, and until when.
    # The new pair is stored only by the lease's holder; a crashed holder's lease simply expires.
    refresh_lease_id = models.CharField(max_length=32, blank=True, editable=False)
    refresh_lease_until = models.DateTimeField(null=True, blank=True, editable=False)

    objects = CredentialQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["portal", "user_id"], name="credential_one_per_user")
        ]

    def __str__(self) -> str:
        return f"user {self.user_id} on {self.portal_id} (token {mask(self.access_token)})"

    def is_expired(self, now=None) -> bool:
        return self.expires_at is None or self.expires_at <= (now or timezone.now())


class RateBucket(models.Model):
    """A portal's shared request budget when no Redis is configured (portals/ratelimit.py):
    ``tat`` is when its bucket is next empty, in unix seconds (GCRA)."""

    key = models.CharField(max_length=255, unique=True)
    tat = models.FloatField()

    def __str__(self) -> str:
        return self.key
