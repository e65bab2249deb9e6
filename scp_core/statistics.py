"""Fresh planner statistics after a bulk load (seeding, imports, connector runs)."""
from django.db import connection


def analyze(*models):
    """ANALYZE the models' tables now, through `scp_analyze` (scp_core migration 0005), which
    the application role may call although it owns no table. Tables filled in bulk have no
    statistics until autovacuum gets to them; meanwhile the planner expects a handful of rows
    and picks plans that take seconds at scale."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT scp_analyze(%s)", [[model._meta.db_table for model in models]])
