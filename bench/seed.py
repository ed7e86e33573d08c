"""Rows the benchmark needs, written straight to the database (Django must be set up first).

Portals and credentials go through the ORM (their tokens are encrypted by the model field);
the million invocations go in as raw batches of 5,000 (COPY on PostgreSQL), timed.
"""
from __future__ import annotations

import datetime as dt
import random
import secrets
import time

from django.db import connection, transaction
from django.utils import timezone

BATCH = 5000


def portals_from_fake(*, fake_portals: list[dict], server_endpoint: str) -> list:
    """Portals the fake knows, stored as if installed, each with its installer's credential."""
    from portals.models import Credential, Portal

    now = timezone.now()
    portals = Portal.objects.bulk_create(
        [
            Portal(member_id=p["member_id"], domain=p["domain"], client_endpoint=p["client_endpoint"],
                   server_endpoint=server_endpoint, status=Portal.Status.ACTIVE, app_status="L",
                   scope="task,placement", application_token=p["application_token"], installed_at=now)
            for p in fake_portals
        ],
        batch_size=1000,
    )
    if not all(p.pk for p in portals):  # backends that do not return ids from bulk_create
        by_member = dict(Portal.objects.filter(member_id__in=[p.member_id for p in portals])
                         .values_list("member_id", "pk"))
        for p in portals:
            p.pk = by_member[p.member_id]
    Credential.objects.bulk_create(
        [
            Credential(portal_id=portal.pk, user_id=int(p["tokens"]["user_id"]), is_admin=True,
                       access_token=p["tokens"]["access_token"], refresh_token=p["tokens"]["refresh_token"],
                       expires_at=dt.datetime.fromtimestamp(p["tokens"]["expires"], dt.timezone.utc),
                       refreshed_at=now, created_at=now)
            for portal, p in zip(portals, fake_portals)
        ],
        batch_size=1000,
    )
    return portals


def portals_filler(*, up_to: int) -> int:
    """Installed-looking portals (not reachable; the admin only lists them) until there are ``up_to``."""
    from portals.models import Credential, Portal

    missing = up_to - Portal.objects.count()
    if missing <= 0:
        return 0
    rng = random.Random(6)
    now = timezone.now()
    statuses = [Portal.Status.ACTIVE] * 18 + [Portal.Status.NEEDS_REAUTH, Portal.Status.UNINSTALLED]
    for start in range(0, missing, BATCH):
        chunk = []
        for i in range(start, min(missing, start + BATCH)):
            domain = f"company-{i:05d}.bitrix24.example"
            chunk.append(Portal(
                member_id=secrets.token_hex(16), domain=domain, client_endpoint=f"https://{domain}/rest/",
                server_endpoint="https://oauth.bitrix.info/rest/", status=rng.choice(statuses),
                app_status=rng.choice("LFDTP"), scope="task,placement",
                application_token=secrets.token_hex(16), installed_at=now - dt.timedelta(days=rng.randint(0, 900)),
            ))
        with transaction.atomic():
            created = Portal.objects.bulk_create(chunk)
            if not all(p.pk for p in created):
                ids = dict(Portal.objects.filter(member_id__in=[p.member_id for p in created])
                           .values_list("member_id", "pk"))
                for p in created:
                    p.pk = ids[p.member_id]
            Credential.objects.bulk_create([
                Credential(portal_id=p.pk, user_id=1, is_admin=True, access_token=secrets.token_hex(34),
                           refresh_token=secrets.token_hex(34), expires_at=now, refreshed_at=now, created_at=now)
                for p in created
            ])
    return missing


def invocations(*, total: int) -> float:
    """``total`` invocation rows spread over every portal and the last 90 days; seconds taken."""
    from placements.models import Invocation
    from portals.models import Portal

    started = time.perf_counter()
    portal_ids = list(Portal.objects.values_list("pk", flat=True))
    rng = random.Random(6)
    now = timezone.now()
    columns = ["portal_id", "placement", "entity_id", "user_id", "lang", "outcome", "detail",
               "duration_ms", "created_at"]
    outcomes = ["ok"] * 18 + ["rejected", "error"]
    langs = ["en"] * 5 + ["ru", "de"]
    adapt = connection.ops.adapt_datetimefield_value

    def rows(n):
        for _ in range(n):
            outcome = rng.choice(outcomes)
            yield (rng.choice(portal_ids), "TASK_VIEW_TOP_PANEL", str(rng.randint(1, 50000)),
                   rng.randint(1, 300), rng.choice(langs), outcome, "shown" if outcome == "ok" else "Bitrix24 did not answer",
                   rng.randint(20, 900), adapt(now - dt.timedelta(seconds=rng.randint(0, 90 * 86400))))

    table = Invocation._meta.db_table
    for start in range(0, total, BATCH):
        n = min(BATCH, total - start)
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows(n):
                        copy.write_row(row)
            else:
                cursor.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
                    list(rows(n)),
                )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {table}")  # what autovacuum does soon after such a load
    return time.perf_counter() - started


def staff_user():
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(
        username="bench-operator", defaults={"is_staff": True, "is_superuser": True}
    )
    return user


def invocations_generated(*, total: int, days: int = 90) -> float:
    """Like ``invocations`` (same spread: every portal, the last ``days`` days, 1 in 20 an error,
    1 in 20 rejected, 20-900 ms) but generated by the database in one INSERT ... SELECT: seconds
    where the row-by-row load takes a minute or more. The tests' million-row checks use it."""
    from placements.models import Invocation
    from portals.models import Portal

    started = time.perf_counter()
    table, portals = Invocation._meta.db_table, Portal._meta.db_table
    spread = days * 86400
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    columns = ("portal_id, placement, entity_id, user_id, lang, outcome, detail, duration_ms, created_at")
    values = (
        "p.id, 'TASK_VIEW_TOP_PANEL', CAST(1 + (x * 13) %% 50000 AS TEXT), 1 + x %% 300, 'en', "
        "CASE WHEN x %% 20 = 0 THEN 'error' WHEN x %% 20 = 1 THEN 'rejected' ELSE 'ok' END, "
        "CASE WHEN x %% 20 < 2 THEN 'Bitrix24 did not answer' ELSE 'shown' END, 20 + (x * 37) %% 881, "
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {portals}")
        count = cursor.fetchone()[0]
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT {values} %s::timestamptz - ((x * 7919) %% %s) * interval '1 second' "
                f"FROM generate_series(1::bigint, %s::bigint) AS x JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n "
                f"FROM {portals}) AS p ON p.n = x %% %s",
                [now, spread, total, count],
            )
            cursor.execute(f"ANALYZE {table}")
        else:
            cursor.execute("DROP TABLE IF EXISTS temp.seed_portal")
            cursor.execute(f"CREATE TEMP TABLE seed_portal AS SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM {portals}")
            cursor.execute("CREATE INDEX temp.seed_portal_n ON seed_portal (n)")
            cursor.execute(
                f"WITH RECURSIVE series(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM series WHERE x < %s) "
                f"INSERT INTO {table} ({columns}) SELECT {values} "
                f"strftime('%%Y-%%m-%%d %%H:%%M:%%f', %s, '-' || ((x * 7919) %% %s) || ' seconds') "
                f"FROM series JOIN seed_portal AS p ON p.n = x %% %s",
                [total, now, spread, count],
            )
            cursor.execute("DROP TABLE temp.seed_portal")
    return time.perf_counter() - started
