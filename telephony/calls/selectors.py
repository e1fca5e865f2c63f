from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime

from .models import Call, Recording

FILTERS = {"status": "status", "outcome": "outcome", "to": "to_number", "from": "from_number",
           "direction": "direction", "campaign": "campaign_id"}


def calls(params=None) -> QuerySet[Call]:
    """Call records, newest first, filtered by query parameters (status, outcome, to, from, direction,
    campaign as its id, since, until as ISO timestamps)."""
    queryset = Call.objects.prefetch_related("legs", "transfers")
    params = params or {}
    for name, field in FILTERS.items():
        if params.get(name):
            queryset = queryset.filter(**{field: params[name]})
    for name, lookup in (("since", "created_at__gte"), ("until", "created_at__lt")):
        if params.get(name) and parse_datetime(params[name]):
            queryset = queryset.filter(**{lookup: parse_datetime(params[name])})
    return queryset


def calls_after(queryset: QuerySet[Call], sid: str) -> QuerySet[Call] | None:
    """The calls listed after the call `sid` (newest first), for keyset paging; None if no such call."""
    last = Call.objects.filter(sid=sid).values("created_at", "pk").first()
    if last is None:
        return None
    return queryset.filter(Q(created_at__lt=last["created_at"]) | Q(created_at=last["created_at"], pk__lt=last["pk"]))


def recordings(params=None) -> QuerySet[Recording]:
    """Recordings, newest first; ``call`` (a call sid) filters."""
    queryset = Recording.objects.select_related("call")
    if (params or {}).get("call"):
        queryset = queryset.filter(call__sid=params["call"])
    return queryset
