"""The governed `GET /api/v1/persons/` with the disclosure ledger off: the same view, policy
and audit record, without the ledger entry. Only the benchmark serves it, to measure what the
ledger costs (issue #13: at most 10 % of the governed throughput)."""
from exchange.views.realtime import PersonListView


class UnrecordedPersonListView(PersonListView):
    def disclose(self, *releases):
        pass
