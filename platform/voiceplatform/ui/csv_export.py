"""CSV downloads of the UI, streamed (large exports never sit in memory) and opened by Excel as UTF-8, safe
to open in a spreadsheet (core.spreadsheet)."""
from __future__ import annotations

from collections.abc import Callable, Iterable

from django.http import StreamingHttpResponse
from django_tenants.utils import tenant_context

from core.spreadsheet import CsvLines


def csv_download(tenant, header: list[str], rows: Callable[[], Iterable], filename: str) -> StreamingHttpResponse:
    """`rows()` is called while the response streams, after the view returned (under ASGI, in another
    task): the tenant's schema is pinned around it here."""
    csv = CsvLines()  # formula-looking cells escaped

    def lines():
        with tenant_context(tenant):
            yield "\ufeff" + csv.line(header)
            for row in rows():
                yield csv.line(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
