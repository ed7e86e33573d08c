"""The inbox: one Event per delivery of a Bitrix24 event (online POST or offline-queue record)."""
from django.db import models
from django.utils import timezone

from portals.models import Portal


class EventQuerySet(models.QuerySet):
    def claimable(self, now=None):
        """Queued events no worker holds a lease on."""
        now = now or timezone.now()
        return self.filter(status=Event.Status.QUEUED).filter(
            models.Q(locked_until__isnull=True) | models.Q(locked_until__lt=now)
        )

    def due(self, now=None):
        """Claimable events whose next attempt is due (a retry's backoff has passed)."""
        now = now or timezone.now()
        return self.claimable(now).filter(next_attempt_at__lte=now)


class Event(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    class Source(models.TextChoices):
        ONLINE = "online", "online"
        OFFLINE = "offline", "offline"

    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="events")
    name = models.CharField(max_length=64, db_index=True)
    object_id = models.CharField(max_length=64, blank=True, help_text="The task id for task events.")
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.ONLINE)
    # What makes two deliveries the same one: ``ts`` of an online POST, the record's id and
    # time of an offline one. (portal, name, object_id, delivery) is unique.
    delivery = models.CharField(max_length=128)
    data = models.JSONField(default=dict, blank=True, help_text="The event's data; never its auth.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    outcome = models.TextField(blank=True, help_text="What the handlers did.")
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    locked_until = models.DateTimeField(null=True, blank=True)
    lock_id = models.CharField(max_length=64, blank=True, help_text="Who holds the lease (a task id).")
    processed_at = models.DateTimeField(null=True, blank=True)

    objects = EventQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["portal", "name", "object_id", "delivery"], name="event_one_per_delivery"
            )
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="event_due")]

    def __str__(self) -> str:
        target = f" {self.object_id}" if self.object_id else ""
        return f"{self.name}{target} on {self.portal_id} ({self.status})"


class OfflineBatch(models.Model):
    """A reservation of the portal's offline queue (``event.offline.get`` with ``clear=0``).

    Stored before its records are processed, so a crash resumes the same ``process_id``
    (protocol 13.8) instead of leaving the records reserved, unseen, for 30 days.
    """

    portal = models.ForeignKey(Portal, on_delete=models.CASCADE, related_name="offline_batches")
    process_id = models.CharField(max_length=128)
    error_pass = models.BooleanField(default=False, help_text="Read with error=1 (a retry of failed records).")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["portal", "process_id"], name="offline_batch_one_per_process")
        ]

    def __str__(self) -> str:
        return f"offline batch {self.process_id} of {self.portal_id}"


class OfflineState(models.Model):
    """One portal's offline-queue consumer: who drains it now (a lease, so the doorbell, the
    sweep and the command never drain one portal twice at once) and when failed records are
    retried next (``error=1``, with backoff)."""

    portal = models.OneToOneField(Portal, on_delete=models.CASCADE, related_name="offline_state")
    locked_until = models.DateTimeField(null=True, blank=True)
    lock_id = models.CharField(max_length=64, blank=True)
    error_passes = models.PositiveIntegerField(default=0, help_text="Error passes in a row that left failures.")
    next_error_pass_at = models.DateTimeField(null=True, blank=True)
    drained_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"offline queue of {self.portal_id}"
