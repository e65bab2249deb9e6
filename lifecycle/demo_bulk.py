"""Synthetic persons and consents generated inside PostgreSQL (`generate_series`), for demo
data and benchmarks of millions of persons: nothing crosses the wire but the statement, and
each chunk is inserted in key order so that the indexes fill page by page rather than at
random (10,000,000 persons were out of reach row by row from Python).

Every value is derived from md5(seed, row number), so a seed gives the same persons again."""
from django.db import connection

from scp_core.models import Consent, ConsentStatus, Person

# The hash a person's id is made of, and a v4-shaped UUID from it.
_ID_HASH = "md5(%(seed)s::text || ':p:' || i)"


def _uuid(column):
    return f"(substr({column}, 1, 12) || '4' || substr({column}, 14, 3) || '8' || substr({column}, 18, 15))::uuid"


def _pick(column, offset, choices):
    """An element of the array parameter `choices`, picked by 6 hex digits of the hash column."""
    return f"(%({choices})s::text[])[1 + ('x' || substr({column}, {offset}, 6))::bit(24)::int %% cardinality(%({choices})s::text[])]"


def insert_persons(*, seed, first, last, step, tenant_id, given, family, sexes, districts, phone_prefix, now):
    """Persons numbered first, first+step, ... up to last (inclusive) for one tenant."""
    person = Person._meta.db_table
    sql = f"""
        INSERT INTO {person} (id, tenant_id, given_name, family_name, national_id, birth_date, sex, phone,
                              district, created_at, updated_at)
        SELECT {_uuid('p')}, %(tenant)s::bigint, {_pick('h', 1, 'given')}, {_pick('h', 7, 'family')}, lpad(i::text, greatest(9, length(i::text)), '0'),
               DATE '1940-01-01' + ('x' || substr(h, 13, 6))::bit(24)::int %% 30000,
               {_pick('h', 19, 'sexes')},
               %(prefix)s::text || lpad((('x' || substr(h, 25, 8))::bit(32)::bigint %% 100000000)::text, 8, '0'),
               {_pick('a', 1, 'districts')}, %(now)s, %(now)s
        FROM (SELECT i, {_ID_HASH} AS p, md5(%(seed)s::text || ':a:' || i) AS h, md5(%(seed)s::text || ':d:' || i) AS a
              FROM generate_series(%(first)s::bigint, %(last)s::bigint, %(step)s::bigint) AS i) AS numbered
        ORDER BY 1
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"seed": str(seed), "first": first, "last": last, "step": step, "tenant": tenant_id,
                             "given": given, "family": family, "sexes": sexes, "districts": districts,
                             "prefix": phone_prefix, "now": now})


def insert_consents(*, seed, first, last, vertical_id, vertical_code, mix, at):
    """Consents in one vertical for persons numbered first..last: of the share `mix` gives
    (kind, weight) with kinds granted, withdrawn and never, a person's kind is picked by hash."""
    total = sum(weight for _, weight in mix)
    bounds, low = {}, 0
    for kind, weight in mix:
        high = low + round(10_000 * weight / total)
        bounds[kind] = (low, high)
        low = high
    bounds[kind] = (bounds[kind][0], 10_000)  # rounding never leaves a sliver of no kind at the top
    granted = bounds.get("granted", (0, 0))
    withdrawn = bounds.get("withdrawn", (0, 0))
    consent = Consent._meta.db_table
    sql = f"""
        INSERT INTO {consent} (person_id, vertical_id, status, prior_status, effective_at, recorded_at)
        SELECT id, %(vertical)s::bigint,
               CASE WHEN k >= %(g_low)s AND k < %(g_high)s THEN %(granted)s ELSE %(withdrawn)s END,
               CASE WHEN k >= %(g_low)s AND k < %(g_high)s THEN '' ELSE %(granted)s END,
               %(at)s, %(at)s
        FROM (SELECT {_uuid(_ID_HASH)} AS id,
                     ('x' || substr(md5(%(seed)s::text || ':c:' || %(code)s::text || ':' || i), 1, 6))::bit(24)::int %% 10000 AS k
              FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i) AS numbered
        WHERE (k >= %(g_low)s AND k < %(g_high)s) OR (k >= %(w_low)s AND k < %(w_high)s)
        ORDER BY id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"seed": str(seed), "first": first, "last": last, "vertical": vertical_id,
                             "code": vertical_code, "g_low": granted[0], "g_high": granted[1],
                             "w_low": withdrawn[0], "w_high": withdrawn[1], "at": at,
                             "granted": ConsentStatus.GRANTED.value, "withdrawn": ConsentStatus.WITHDRAWN.value})
