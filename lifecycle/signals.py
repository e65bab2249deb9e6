"""What governance tells the layers above it, synchronously and inside the transaction of the
change (receivers write to the same database, so their writes commit or roll back with it).
The exchange turns these into events of its outbox (exchange.receivers)."""
from django.dispatch import Signal

# sender=Integration; kwargs: integration, before, after
integration_status_changed = Signal()
# sender=Consent; kwargs: person, vertical, effective_at
consent_withdrawn = Signal()
