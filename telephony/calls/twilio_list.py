"""Reading the Calls list as Twilio's API does: its filters (To, From, Status, ParentCallSid,
StartTime / EndTime with the `<` and `>` forms) and its paging (Page, PageSize, PageToken; the
response carries next_page_uri and friends, which is what Twilio clients follow)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlencode

from django.db.models import QuerySet
from django.utils.dateparse import parse_date, parse_datetime

from core.api import whole_number

from . import selectors
from .models import Call

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# The resource shows "initiated" as Twilio does, "queued" (initiated is only a callback event).
RESOURCE_STATUS = {Call.Status.INITIATED: Call.Status.QUEUED}
FILTER_PARAMS = ("To", "From", "Status", "ParentCallSid", "StartTime", "StartTime<", "StartTime>",
                 "EndTime", "EndTime<", "EndTime>")


class ListError(ValueError):
    """A list parameter Twilio would refuse; the message names it."""


@dataclass(frozen=True)
class CallPage:
    calls: list[Call]
    page: int
    page_size: int
    next_page_token: str | None  # PA<sid of the last call>, when there is a next page


def _day_range(name: str, value: str) -> tuple[dt.datetime, dt.datetime]:
    """A YYYY-MM-DD day (UTC), or a timestamp's whole day, as [start, end)."""
    moment = parse_datetime(value.replace(" ", "+")) if "T" in value else None
    day = moment.date() if moment else parse_date(value) if len(value) == 10 else None
    if day is None:
        raise ListError(f"{name} must be a date (YYYY-MM-DD) or a timestamp (YYYY-MM-DDTHH:MM:SSZ), not {value!r}")
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def _is_date(value: str) -> bool:
    # Twilio's Python client sends a date as its midnight (YYYY-MM-DDT00:00:00Z): read that as the date.
    return "T" not in value or value.endswith("T00:00:00Z")


def _bound(name: str, value: str) -> tuple[str, dt.datetime]:
    """(lookup, moment): `X>` is on or after the date's midnight (or the moment), `X<` on or before
    the date (the whole day) or the moment."""
    if _is_date(value):
        start, end = _day_range(name, value)
        return ("lt", end) if name.endswith("<") else ("gte", start)
    moment = parse_datetime(value.replace(" ", "+"))
    if moment is None:
        raise ListError(f"{name} must be a date (YYYY-MM-DD) or a timestamp (YYYY-MM-DDTHH:MM:SSZ), not {value!r}")
    moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return ("lte" if name.endswith("<") else "gte"), moment


def filtered(params) -> QuerySet[Call]:
    queryset = Call.objects.all()
    for name, field in (("To", "to_number"), ("From", "from_number")):
        if params.get(name):
            queryset = queryset.filter(**{field: params[name]})
    if status := params.get("Status"):
        statuses = [Call.Status.INITIATED, status] if status == Call.Status.QUEUED else [status]
        if status not in Call.Status.values or status == Call.Status.INITIATED:
            raise ListError(f"Status must be one of queued, ringing, in-progress, canceled, completed, failed, "
                            f"busy, no-answer, not {status!r}")
        queryset = queryset.filter(status__in=statuses)
    if params.get("ParentCallSid"):
        queryset = queryset.none()  # no call here has a parent (no <Dial> legs)
    for param, field in (("StartTime", "started_at"), ("EndTime", "ended_at")):
        if value := params.get(param):
            start, end = _day_range(param, value)
            queryset = queryset.filter(**{f"{field}__gte": start, f"{field}__lt": end})
        for suffix in (">", "<"):
            if value := params.get(param + suffix):
                lookup, moment = _bound(param + suffix, value)
                queryset = queryset.filter(**{f"{field}__{lookup}": moment})
    return queryset.order_by("-created_at", "-pk")


def _number(params, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    if (value := whole_number(raw, low, high)) is None:
        raise ListError(f"{name} must be a whole number from {low} to {high}")
    return value


def page_of(params) -> CallPage:
    page_size = _number(params, "PageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    page = _number(params, "Page", 0, 0, 10 ** 9)
    queryset = filtered(params)
    if token := params.get("PageToken"):
        after = selectors.calls_after(queryset, token.removeprefix("PA")) if token.startswith("PA") else None
        if after is None:
            raise ListError(f"PageToken {token!r} is not a page of this list")
        rows = list(after[:page_size + 1])
    else:
        rows = list(queryset[page * page_size:(page + 1) * page_size + 1])
    calls = rows[:page_size]
    more = len(rows) > page_size
    return CallPage(calls, page, page_size, f"PA{calls[-1].sid}" if more else None)


def page_uris(path: str, params, page: CallPage) -> dict:
    """The paging fields of a Twilio list response (relative URIs, as Twilio gives them)."""
    filters = {name: params[name] for name in FILTER_PARAMS if params.get(name)}

    def uri(**paging) -> str:
        return f"{path}?{urlencode({**filters, 'PageSize': page.page_size, **paging})}"

    start = page.page * page.page_size
    return {
        "page": page.page, "page_size": page.page_size, "start": start,
        "end": start + max(len(page.calls) - 1, 0),
        "uri": uri(Page=page.page, **({"PageToken": params["PageToken"]} if params.get("PageToken") else {})),
        "first_page_uri": uri(Page=0),
        "next_page_uri": uri(Page=page.page + 1, PageToken=page.next_page_token) if page.next_page_token else None,
        "previous_page_uri": None if page.page == 0 else uri(Page=page.page - 1),
    }
