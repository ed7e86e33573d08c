"""The log of widget invocations: who opened which placement for what, and how it went."""
from django.db import models
from django.utils import timezone


class Invocation(models.Model):
    class Outcome(models.TextChoices):
        OK = "ok", "ok"
        REJECTED = "rejected", "rejected"
        ERROR = "error", "error"

    portal = models.ForeignKey(
        "portals.Portal", on_delete=models.CASCADE, related_name="invocations", null=True, blank=True
    )
    placement = models.CharField(max_length=64)
    entity_id = models.CharField(max_length=64, blank=True, help_text="The task id here.")
    user_id = models.PositiveBigIntegerField(null=True, blank=True)
    lang = models.CharField(max_length=8, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    detail = models.CharField(max_length=255, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["portal", "-created_at"], name="invocation_portal_time"),
            models.Index(fields=["entity_id"], name="invocation_entity"),  # admin search by task id
        ]

    def __str__(self) -> str:
        return f"{self.placement} {self.entity_id} {self.outcome}"


class InvocationDay(models.Model):
    """One closed UTC day of invocations, added up once (placements/dashboard.py), so the admin
    home's charts read 30 small rows instead of scanning a million invocations on every visit.
    Pruning invocations keeps these, so the history outlives the log."""

    day = models.DateField(unique=True)
    outcomes = models.JSONField(default=dict, help_text="Opens by outcome, e.g. {\"ok\": 1200, \"error\": 3}.")
    duration_buckets = models.JSONField(
        default=list, help_text="Opens per duration bucket (placements.dashboard.DURATION_BOUNDS_MS)."
    )
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["day"]

    def __str__(self) -> str:
        return f"{self.day}: {sum(self.outcomes.values())} opens"
