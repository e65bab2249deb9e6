"""The governed `GET /api/v1/persons/` with the disclosure ledger off: the same view, policy
and audit record, without building or writing the ledger entry. Only the benchmark serves it,
to measure what the ledger costs (issue #13: at most 10 % of the governed throughput)."""
import dataclasses

from exchange.scope import DataScope
from exchange.views.realtime import PersonListView


class _UnrecordedScope(DataScope):
    def release(self, channel, person_ids, fields=None):
        return {"person_ids": []}  # nothing to record (GovernedAPIView.disclose skips it)


class UnrecordedPersonListView(PersonListView):
    def read_scope(self):
        scope = super().read_scope()
        return _UnrecordedScope(**{field.name: getattr(scope, field.name) for field in dataclasses.fields(scope)})
