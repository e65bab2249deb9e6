"""The processes of the run, each in its own process group and stopped at the end:
gunicorn (the portal, production-like settings), one Celery worker, and nginx as a webhook
receiver that answers 204 to everything."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

BIN = Path(sys.executable).parent
QUEUE = "bench"  # the benchmark's own Celery queue: nothing else consumes it


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


class Process:
    def __init__(self, args, log, env=None):
        self.log = log
        self.process = subprocess.Popen(args, cwd=settings.BASE_DIR, env=env or os.environ.copy(),
                                        stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process.poll() is None

    def stop(self):
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)


def gunicorn(workdir, workers):
    port = free_port()
    metrics = workdir / "prometheus"
    metrics.mkdir(exist_ok=True)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    # --preload: the application is imported once, before the port opens, so the workers answer
    # from their first request (a replica behind a readiness probe gets no traffic before that).
    # Without it a worker imported Django on its first request: 10+ s on a loaded machine,
    # which the first-run figure and the short tiny runs measured instead of the server.
    server = Process([str(BIN / "gunicorn"), "bench.wsgi:application", "--bind", f"127.0.0.1:{port}",
                      "--workers", str(workers), "--worker-class", "sync", "--preload"],
                     workdir / "gunicorn.log", env)
    wait_port(port)
    server.port = port
    return server


def worker_pids(server):
    """The gunicorn workers (children of the arbiter)."""
    return [int(p) for p in Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()]


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def celery_worker(workdir, *, threads=0, name=""):
    """One worker process: the figures are per worker. `--pool=solo`, or with `threads` a
    thread pool of that many (as the deployment's webhook worker runs). `name` tells several
    workers of one run apart (node name and log); `worker.nodename` is the full node name."""
    env = {**os.environ, "SCP_WEBHOOK_ALLOW_LOOPBACK": "true"}
    pool = ["--pool=threads", f"--concurrency={threads}"] if threads else ["--pool=solo"]
    suffix = f"-{name}" if name else ""
    nodename = f"bench-{os.getpid()}{suffix}@{socket.gethostname()}"
    worker = Process([str(BIN / "celery"), "-A", "scp_portal", "worker", *pool, "-Q", QUEUE, "-I", "bench.tasks",
                      "--loglevel=WARNING", "-n", nodename, "--without-gossip", "--without-mingle",
                      "--without-heartbeat"], workdir / f"celery{suffix}.log", env)
    worker.nodename = nodename
    return worker


NGINX_CONF = """
daemon off;
worker_processes 1;
error_log {dir}/nginx-error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 204; }}
    }}
}}
"""


def webhook_receiver(workdir):
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=workdir, port=port))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    receiver = Process([nginx, "-c", str(conf), "-p", str(workdir)], workdir / "nginx.log")
    wait_port(port)
    receiver.url = f"http://127.0.0.1:{port}/hook"
    return receiver
