"""Celery tasks of the benchmark only: the no-op baseline, and a marker that records when
the worker reached it (one worker, one process: tasks run in queue order)."""
import time

import redis
from celery import shared_task
from django.conf import settings


@shared_task
def noop_task():
    return None


@shared_task
def mark_task(key):
    redis.Redis.from_url(settings.SCP_REDIS_URL).set(key, repr(time.time()), ex=3600)
