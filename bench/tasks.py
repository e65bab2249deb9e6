"""Celery tasks of the benchmark only: the no-op baseline, a marker that records when the
worker reached it (one worker, one process: tasks run in queue order), and an import that
says which worker ran it."""
import json
import time

import redis
from celery import shared_task
from django.conf import settings

from exchange.batch import run_import


@shared_task
def noop_task():
    return None


@shared_task
def mark_task(key):
    redis.Redis.from_url(settings.SCP_REDIS_URL).set(key, repr(time.time()), ex=3600)


@shared_task(bind=True)
def told_import_task(self, job_id, key):
    """The import job's own code (`run_import`, as `run_import_task` runs it), then which worker
    ran it and what came of it appended to a Redis list: the multi-process check
    (bench/multi.py) sends each job twice and reads who claimed it."""
    result = run_import(job_id)
    redis.Redis.from_url(settings.SCP_REDIS_URL).rpush(
        key, json.dumps({"job": job_id, "worker": self.request.hostname, "result": result}))
    return result
