"""State the exchange keeps for partners: idempotent replies to pushes (spec §8.2)."""
from django.db import models
from django.utils import timezone


class IdempotencyRecord(models.Model):
    """The first response to a push with a given Idempotency-Key, replayed for repeats."""

    integration = models.ForeignKey("registry.Integration", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["integration", "key"], name="idempotency_key_unique")]
