"""REST framework pieces every app's API uses (settings.REST_FRAMEWORK names them)."""
from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser


class JSONBodyParser(JSONParser):
    """JSON, with a document nested too deeply for the decoder a 400 rather than a crash."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply") from None


class Pages(LimitOffsetPagination):
    max_limit = 1000
    # Postgres takes OFFSET as a bigint; past any real table's size anyway.
    max_offset = 10 ** 12

    def get_offset(self, request):
        return min(super().get_offset(request), self.max_offset)
