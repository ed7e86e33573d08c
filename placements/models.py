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
