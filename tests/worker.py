"""A real Celery worker (with its beat) on the real Redis, against the test database."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

CELERY = str(Path(sys.executable).parent / "celery")


def worker_env(**extra):
    params = connection.settings_dict
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "scp_portal.settings",
        "DJANGO_DEBUG": "true",
        "DATABASE_URL": f"postgres://{params['USER']}:{params['PASSWORD']}@{params['HOST']}:{params['PORT']}/{params['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "SCP_WEBHOOK_ALLOW_LOOPBACK": "true",
        **{k: str(v) for k, v in extra.items()},
    }


def purge_queue(env):
    subprocess.run([CELERY, "-A", "scp_portal", "purge", "-f"], cwd=settings.BASE_DIR, env=env,
                   capture_output=True, check=True, timeout=60)


class Worker:
    """`celery worker -B --pool=solo` (beat optional) in its own process group, so SIGKILL takes it all."""

    def __init__(self, env, tmp_path, name="w1", beat=True):
        self.log = tmp_path / f"{name}.log"
        beat_args = ["-B", "-s", str(tmp_path / f"{name}-beat-schedule")] if beat else []
        self.process = subprocess.Popen(
            [CELERY, "-A", "scp_portal", "worker", *beat_args, "--pool=solo", "-Q", "celery,webhooks", "--loglevel=INFO", "-n", f"{name}@%h"],
            cwd=settings.BASE_DIR, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )

    def kill(self, sig=signal.SIGKILL):
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_until(predicate, timeout, what, interval=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
