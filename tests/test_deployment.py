"""Deployment settings: production settings pass `check --deploy` with no warning."""
import base64
import os
import secrets
import subprocess
import sys

from django.conf import settings


def test_production_settings_pass_check_deploy():
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SCP_"))},
        "DJANGO_SETTINGS_MODULE": "scp_portal.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "scp.example",
        "SCP_PSEUDONYM_KEY": secrets.token_urlsafe(32),
        "SCP_AUDIT_SIGNING_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=settings.BASE_DIR, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_its_secrets():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "scp_portal.settings", "DJANGO_DEBUG": "false"}
    env.pop("DJANGO_SECRET_KEY", None)
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=settings.BASE_DIR, env=env,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr


def test_compose_file_validates():
    """`docker-compose config` (Debian's 1.29, the compose tool these machines can have)."""
    compose = settings.BASE_DIR / "docker" / "compose.yaml"
    env = {**os.environ, "SCP_DB_PASSWORD": "validation-only"}
    result = subprocess.run(["docker-compose", "-f", str(compose), "config", "-q"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    services = subprocess.run(["docker-compose", "-f", str(compose), "config", "--services"], env=env,
                              capture_output=True, text=True, check=True).stdout.split()
    assert set(services) == {"postgres", "redis", "keycloak", "portal", "worker", "beat", "nginx"}
