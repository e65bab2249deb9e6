"""The bare baseline of the governed `GET /api/v1/persons/`: the same rows and fields, read
and serialized by the same server, with no token, policy, rate limit, consent, masking or
audit. The benchmark seeds a tenant in which every person consents, so both serve the same page.
The tenant comes as its id (the governed path has it from the integration, joined in)."""
from django.http import JsonResponse

from lifecycle.demo import HEALTH_READ_FIELDS
from scp_core.models import Person

_FIELDS = list(HEALTH_READ_FIELDS)


def bare_persons(request):
    page_size = min(int(request.GET.get("page_size", 100)), 500)
    persons = Person.objects.filter(tenant_id=int(request.GET["tenant_id"]))
    if request.GET.get("after"):  # a page deep into the list: keyset, as the governed cursor
        persons = persons.filter(id__gt=request.GET["after"])
    rows = persons.order_by("id").values(*_FIELDS)[:page_size]
    return JsonResponse({"results": [{**row, "id": str(row["id"])} for row in rows]})
