"""Deployment settings: production settings pass `check --deploy` with no warning."""
import base64
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

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


def _compose():
    """`docker compose` (v2, installed by scripts/compose.sh as the docker CLI plugin); its
    standalone binary where the machine has no docker CLI."""
    if shutil.which("docker"):
        return ["docker", "compose"]
    return [str(Path(os.environ.get("SCP_SERVICES_DIR", settings.BASE_DIR / ".services")) / "bin" / "docker-compose")]


def test_compose_file_validates():
    """`docker compose config` validates the deployment's compose file."""
    compose = [*_compose(), "-f", str(settings.BASE_DIR / "docker" / "compose.yaml")]
    env = {**os.environ, "SCP_DB_PASSWORD": "validation-only"}
    result = subprocess.run([*compose, "config", "-q"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    services = subprocess.run([*compose, "config", "--services"], env=env,
                              capture_output=True, text=True, check=True).stdout.split()
    assert set(services) == {"postgres", "redis", "keycloak", "portal", "worker", "beat", "nginx"}
