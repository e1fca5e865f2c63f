"""The error answers every API operation can give, added to each in the OpenAPI schema (drf-spectacular
documents only the success answers it can infer)."""
from __future__ import annotations

ERROR_SCHEMA = {
    "type": "object",
    "description": "what was wrong: `detail`, or a list of messages per input field",
    "additionalProperties": True,
}
ERRORS = {
    "400": "bad input: the messages name the fields",
    "401": "no API key, or a wrong one",
    "403": "the key may not do this",
    "404": "no such object for this tenant",
    "406": "the Accept header asks for a format the API does not serve",
    "415": "the body's content type is not JSON, form or multipart",
    "429": "too many failed API key attempts from this address",
}


def document_errors(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for code, description in ERRORS.items():
                operation["responses"].setdefault(code, {
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                })
    return result
