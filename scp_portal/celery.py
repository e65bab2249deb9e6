"""The Celery application; tasks live in each app's tasks.py and take ids."""
import os

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scp_portal.settings")

app = Celery("scp_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _database_connections_as_between_requests(task=None, **kwargs):
    """Workers keep their database connection across tasks (CELERY_DB_REUSE_MAX), so before
    each task do what Django does before each request: drop a connection that failed or outlived
    CONN_MAX_AGE, and health-check the kept one on first use. A worker whose connection the
    server dropped then recovers at its next task instead of failing until the reuse limit."""
    if task is not None and getattr(task.request, "is_eager", False):
        return  # inside the caller's own request and perhaps its transaction: leave it alone
    from django.db import close_old_connections

    close_old_connections()
