"""OpenAPI postprocessing: every error is documented as RFC 9457 problem details."""


_PROBLEM_TYPE = "application/problem+json"


def problem_responses_hook(result, generator, request, public):
    """Postprocessing hook: every error response of every operation (and the 401 and 403
    that authentication adds) is documented as RFC 9457 problem details, which is what the
    APIs send; an operation that declares none gets the problem shape for them anyway."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status in ("401", "403", "413", "429", "500"):  # what the guard answers on any operation
                operation["responses"].setdefault(status, {"description": "problem details"})
            for status, response in operation["responses"].items():
                if not str(status).isdigit() or int(status) < 400:
                    continue
                content = response.get("content") or {}
                schema = next(iter(content.values()), {}).get("schema") or {"$ref": "#/components/schemas/Problem"}
                response["content"] = {_PROBLEM_TYPE: {"schema": schema}}
    return result
