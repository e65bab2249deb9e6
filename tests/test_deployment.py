"""Deployment settings: production settings pass `check --deploy` with no warning."""
import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

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
        "KEYCLOAK_PORTAL_CLIENT_SECRET": secrets.token_urlsafe(32),
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


def test_production_refuses_every_development_secret_and_names_it():
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SCP_", "KEYCLOAK_PORTAL"))},
        "DJANGO_SETTINGS_MODULE": "scp_portal.settings", "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "dev-insecure-secret-key-change-me", "SCP_PSEUDONYM_KEY": "dev-pseudonym-key",
        "SCP_AUDIT_SIGNING_KEY": base64.b64encode(os.urandom(32)).decode(),
        "KEYCLOAK_PORTAL_CLIENT_SECRET": "scp-portal-dev-secret", "SCP_BENCH_DEV_REALM": "true",
        "KEYCLOAK_URL": "https://auth.scp.example",  # the benchmark's exception is for loopback only
    }
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=settings.BASE_DIR, env=env,
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "KEYCLOAK_PORTAL_CLIENT_SECRET, SCP_PSEUDONYM_KEY, SECRET_KEY" in result.stderr


def test_the_build_context_holds_no_secret_data_or_local_database(tmp_path):
    """What `docker build` would send (docker-py's own reading of .dockerignore) leaves out
    secrets, data folders, local databases and the developer's environment."""
    from docker.utils.build import exclude_paths

    root = Path(settings.BASE_DIR)
    planted = ["docker/secrets/keycloak_portal_secret", "var/imports/x.csv", "var/exports/exchange/y.ndjson",
               "db.sqlite3", "media/z.bin", ".env", "artifacts/bench/bench.json", "scp.key"]
    made = []
    for name in planted:
        path = root / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("secret")
            made.append(path)
    try:
        patterns = [line.strip() for line in (root / ".dockerignore").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
        sent = exclude_paths(str(root), patterns, dockerfile="docker/Dockerfile")
    finally:
        for path in made:
            path.unlink()
    folders = (".git/", ".venv/", ".services/", "var/", "media/", "artifacts/", "docker/secrets/")
    leaked = sorted(set(planted) & sent | {name for name in sent if name.startswith(folders)})
    assert not leaked, leaked
    assert "manage.py" in sent and "docker/Dockerfile" in sent and "scp_portal/settings/base.py" in sent


def _compose():
    """`docker compose` (v2, installed by scripts/compose.sh as the docker CLI plugin); its
    standalone binary where the machine has no docker CLI."""
    if shutil.which("docker"):
        return ["docker", "compose"]
    return [str(Path(os.environ.get("SCP_SERVICES_DIR", settings.BASE_DIR / ".services")) / "bin" / "docker-compose")]


def test_compose_file_validates():
    """`docker compose config` validates the deployment's compose file."""
    compose = [*_compose(), "-f", str(settings.BASE_DIR / "docker" / "compose.yaml")]
    env = {**os.environ, **{name: "validation-only" for name in (
        "SCP_DB_PASSWORD", "SCP_DB_OWNER_PASSWORD", "SCP_DB_PURGE_PASSWORD", "SCP_KEYCLOAK_DB_PASSWORD")}}
    result = subprocess.run([*compose, "config", "-q"], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    services = subprocess.run([*compose, "config", "--services"], env=env,
                              capture_output=True, text=True, check=True).stdout.split()
    assert set(services) == {"postgres", "redis", "keycloak", "migrate", "portal", "worker", "webhooks", "beat", "nginx"}
    # One role per duty: the owner migrates, the portal and workers run as the application
    # role, only the worker holds the purge role, and Keycloak has its own database and role.
    full = json.loads(subprocess.run([*compose, "config", "--format", "json"], env=env,
                                     capture_output=True, text=True, check=True).stdout)
    config = full["services"]
    environment = {name: service.get("environment", {}) for name, service in config.items()}
    user = {name: urlsplit(env["DATABASE_URL"]).username for name, env in environment.items() if "DATABASE_URL" in env}
    assert user == {"migrate": "scp_owner", "portal": "scp", "worker": "scp", "webhooks": "scp", "beat": "scp"}
    assert [name for name, env in environment.items() if "DATABASE_PURGE_URL" in env] == ["worker"]
    assert "migrate" not in config["portal"]["command"]
    keycloak = environment["keycloak"]
    assert keycloak["KC_DB_USERNAME"] == "keycloak" and keycloak["KC_DB_URL"].endswith("/keycloak")
    # Data-sharing agreements (issue #14): the portal, which uploads and serves them, keeps them on
    # a named volume mounted where SCP_AGREEMENTS_DIR points (persistent across containers); no
    # other service names the folder (the worker's sweep reads only the database).
    folder = environment["portal"]["SCP_AGREEMENTS_DIR"]
    mounts = {(m["type"], m["source"], m["target"]) for m in config["portal"].get("volumes", [])}
    assert ("volume", "agreements", folder) in mounts and "agreements" in full["volumes"]
    assert [name for name, env in environment.items() if "SCP_AGREEMENTS_DIR" in env] == ["portal"]
    assert not folder.startswith("/app/")  # outside the code and its static files
    # Batch files: what the portal stores the worker reads, and the other way round.
    for service in ("portal", "worker"):
        mounts = {(m["source"], m["target"]) for m in config[service].get("volumes", [])}
        for name in ("SCP_IMPORT_DIR", "SCP_EXPORT_DIR"):
            assert any(environment[service][name].startswith(target + "/") and source == "exchange-files"
                       for source, target in mounts), (service, name)


def test_the_image_gives_its_user_the_agreements_folder():
    """The image runs as a non-root user: the folder the agreements volume mounts on exists in it
    and is that user's, so that a fresh named volume starts writable by the portal."""
    dockerfile = (Path(settings.BASE_DIR) / "docker" / "Dockerfile").read_text()
    compose = (Path(settings.BASE_DIR) / "docker" / "compose.yaml").read_text()
    user = re.search(r"^USER (\S+)$", dockerfile, re.M).group(1)
    assert user != "root"
    folder = re.search(r"SCP_AGREEMENTS_DIR: (\S+)", compose).group(1)
    # The RUN lines, continuations joined.
    setup = " ".join(line for line in dockerfile.replace("\\\n", " ").splitlines() if line.startswith("RUN "))
    assert "mkdir -p" in setup and folder in setup
    assert f"chown -R {user} {Path(folder).parent} " in setup or f"chown {user} {folder} " in setup
