from django.db.models import QuerySet
from django.utils.dateparse import parse_datetime

from .models import Call, Recording

FILTERS = {"status": "status", "outcome": "outcome", "to": "to_number", "from": "from_number",
           "direction": "direction"}


def calls(params=None) -> QuerySet[Call]:
    """Call records, newest first, filtered by query parameters (status, outcome, to, from, direction,
    since, until as ISO timestamps)."""
    queryset = Call.objects.prefetch_related("legs")
    params = params or {}
    for name, field in FILTERS.items():
        if params.get(name):
            queryset = queryset.filter(**{field: params[name]})
    for name, lookup in (("since", "created_at__gte"), ("until", "created_at__lt")):
        if params.get(name) and parse_datetime(params[name]):
            queryset = queryset.filter(**{lookup: parse_datetime(params[name])})
    return queryset


def recordings(params=None) -> QuerySet[Recording]:
    """Recordings, newest first; ``call`` (a call sid) filters."""
    queryset = Recording.objects.select_related("call")
    if (params or {}).get("call"):
        queryset = queryset.filter(call__sid=params["call"])
    return queryset
