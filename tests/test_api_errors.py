"""Every non-2xx response under /api/ is application/problem+json, 500s included."""
import pytest
from django.test import Client
from django.urls import path

from scp_portal import urls as project_urls

pytestmark = pytest.mark.django_db


def _boom(request):
    raise RuntimeError("secret stack detail")


urlpatterns = [path("api/v1/boom/", _boom), *project_urls.urlpatterns]


@pytest.mark.urls("tests.test_api_errors")
def test_unhandled_error_is_a_problem_without_stack_trace(settings):
    settings.DEBUG = False
    response = Client(raise_request_exception=False).get("/api/v1/boom/")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "server_error" and body["request_id"] == response["X-Request-ID"]
    assert b"secret stack detail" not in response.content and b"Traceback" not in response.content


def test_unknown_path_and_method_are_problems(api, demo):
    response = api.get("/api/v1/nowhere/")
    assert response.status_code == 404 and response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"
    response = api.delete("/api/v1/governance/integrations/")
    assert response.status_code in (401, 403, 405) and response["Content-Type"] == "application/problem+json"


def test_wrong_media_type_is_415(api, staff):
    api.force_authenticate(staff["ke-admin"])
    response = api.post("/api/v1/governance/integrations/", "a=b", content_type="text/plain")
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"
    response = api.put("/api/v1/governance/integrations/", {}, format="json")
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"
