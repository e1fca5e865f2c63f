"""REST framework pieces every app's API uses (settings.REST_FRAMEWORK names them)."""
from __future__ import annotations

from contextlib import contextmanager

from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import JSONParser
from rest_framework.serializers import as_serializer_error


class JSONBodyParser(JSONParser):
    """JSON, with a document nested too deeply for the decoder a 400 rather than a crash."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply") from None


def whole_number(raw: str, low: int, high: int) -> int | None:
    """`raw` as a whole number from `low` to `high`, or None when it is not one."""
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return None
    return value if low <= value <= high else None


class Pages(LimitOffsetPagination):
    """limit/offset pages; a limit or offset that is not a whole number in range is a 400 (not
    silently the default)."""

    max_limit = 1000
    max_offset = 10 ** 12  # Postgres takes OFFSET as a bigint; far past any real table anyway

    def _number(self, request, name: str, default: int, low: int, high: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        if (value := whole_number(raw, low, high)) is None:
            raise ValidationError({name: [f"must be a whole number from {low} to {high}"]})
        return value

    def get_limit(self, request):
        return self._number(request, self.limit_query_param, self.default_limit, 1, self.max_limit)

    def get_offset(self, request):
        return self._number(request, self.offset_query_param, 0, 0, self.max_offset)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        bounds = {self.limit_query_param: (1, self.max_limit), self.offset_query_param: (0, self.max_offset)}
        for parameter in parameters:
            low, high = bounds[parameter["name"]]
            parameter["schema"].update(minimum=low, maximum=high)
        return parameters


class ReusedSerializer:
    """A serializer class's instances, built once and used again request after request: building one
    (deep copies of its fields, a model serializer's introspection of the model) costs more than
    using it, milliseconds for a large one. Offers what keeps no state on the instance: validation
    (as `is_valid(raise_exception=True)`: a ValidationError with the same errors) and representation
    (as `.data`). An instance serves one request at a time, whatever the thread."""

    def __init__(self, serializer_class):
        self.serializer_class = serializer_class
        self._idle: list = []

    @contextmanager
    def _instance(self, context: dict):
        try:
            serializer = self._idle.pop()  # atomic: each instance is taken by one thread
        except IndexError:
            serializer = self.serializer_class()
        serializer._context = context
        try:
            yield serializer
        finally:
            serializer._context = {}
            self._idle.append(serializer)

    def validated(self, data, context: dict | None = None) -> dict:
        with self._instance(context or {}) as serializer:
            try:
                return serializer.run_validation(data)
            except ValidationError as error:  # errors by field, as is_valid gives them (a JSON `null` too)
                raise ValidationError(as_serializer_error(error)) from None

    def represented(self, instance, context: dict | None = None) -> dict:
        with self._instance(context or {}) as serializer:
            return serializer.to_representation(instance)
