"""Percentiles computed from the calls themselves (PostgreSQL percentile_cont over the call records),
not estimated from histogram buckets: what the dashboards print as p50 / p90 / p99.

The histograms in Redis still draw the distributions (their bars); these replace only the figures.
A call counts in a window when it was created in it. One query per dashboard read: the scopes asked
for (everything, and per carrier or campaign or tenant) come out of one GROUPING SETS. The same query
counts conversations: answered calls that ended, and those that ended normally (not abandoned, not
ended by an agent or platform failure).
"""
from __future__ import annotations

import datetime as dt

from django.db import connection

# figure name (a dashboard histogram's, or a stage's) -> its value in a call record
COLUMNS = {"setup_ms": "setup_ms", "pdd_ms": "post_dial_delay_ms", "jitter_ms": "jitter_ms",
           "loss_percent": "loss_percent", "mos": "mos", "ai_response_ms": "ai_response_ms",
           "ai_connect_ms": "ai_connect_ms", "queue_ms": "EXTRACT(EPOCH FROM started_at - created_at) * 1000"}
# Reasons an answered call's conversation was cut short by a failure (telephony.gateway.events).
FAILURE_REASONS = ["agent_connect_failed", "agent_connect_timeout", "agent_protocol_error", "media_error",
                   "gateway_died", "gateway_shutdown", "transport_error"]
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
GROUPS = {"carrier": "carrier_id", "campaign": "campaign_id", "tenant": "tenant"}


def _round(value):
    return None if value is None else round(float(value), 3)


def call_percentiles(schemas: list[str], since: dt.datetime, by: tuple[str, ...] = ()) -> dict:
    """{"all": {histogram: {p50, p90, p99, count}}, carrier: {id: {…}}, …} over the calls of these
    tenant schemas created since ``since``; ``by`` names breakdowns among GROUPS."""
    from telephony.calls.models import Call

    if not schemas:
        return {"all": {**{name: {"count": 0, "p50": None, "p90": None, "p99": None} for name in COLUMNS},
                        "conversations": {"answered": 0, "completed": 0, "rate": None}}}
    table, quote = Call._meta.db_table, connection.ops.quote_name
    columns = ", ".join(f"{expression} AS {name}" for name, expression in COLUMNS.items())
    union = " UNION ALL ".join(
        f"SELECT %s AS tenant, carrier_id, campaign_id, answered_at, ended_at, abandoned, reason, {columns} "
        f"FROM {quote(schema)}.{quote(table)} WHERE created_at >= %s" for schema in schemas)
    params: list = [FAILURE_REASONS]
    for schema in schemas:
        params += [schema, since]
    quantiles = ", ".join(str(q) for _, q in QUANTILES)
    figures = ", ".join(f"count({c}), percentile_cont(ARRAY[{quantiles}]::float8[]) WITHIN GROUP (ORDER BY {c})"
                        for c in COLUMNS)
    keys = [GROUPS[name] for name in by]
    sets = ", ".join(["()"] + [f"({k})" for k in keys])
    grouping = ", ".join(keys) if keys else "NULL"
    talked = "answered_at IS NOT NULL AND ended_at IS NOT NULL"
    conversations = (f"count(*) FILTER (WHERE {talked}), "
                     f"count(*) FILTER (WHERE {talked} AND NOT abandoned AND reason <> ALL(%s))")
    sql = (f"SELECT {grouping}, {', '.join(f'GROUPING({k})' for k in keys) or '0'}, {conversations}, {figures} "
           f"FROM ({union}) AS calls GROUP BY GROUPING SETS ({sets})")
    out: dict = {"all": {}, **{name: {} for name in by}}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    width = max(len(keys), 1)
    for row in rows:
        group_values, grouping_bits = row[:width], row[width:2 * width]
        (answered, completed), values = row[2 * width:2 * width + 2], row[2 * width + 2:]
        scope = out["all"]
        for name, value, bit in zip(by, group_values, grouping_bits, strict=False):
            if bit == 0:  # grouped by this key
                if value is None:
                    scope = None
                    break
                scope = out[name].setdefault(str(value), {})
                break
        if scope is None:
            continue
        scope["conversations"] = {"answered": answered, "completed": completed,
                                  "rate": round(completed / answered, 4) if answered else None}
        for i, name in enumerate(COLUMNS):
            count, quantile_values = values[2 * i], values[2 * i + 1] or [None] * len(QUANTILES)
            scope[name] = {"count": count, **{label: _round(v) for (label, _), v in zip(QUANTILES, quantile_values,
                                                                                       strict=True)}}
    return out
