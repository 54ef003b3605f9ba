"""Reading request bodies: JSON objects, multipart forms, uploaded and base64 images, with 400s that say what is wrong."""

from __future__ import annotations

import base64
import binascii

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from .errors import ApiError
from .jsonio import JSONDecodeError, loads

MAX_FORM_FILES = 256


async def json_object(request: Request) -> dict:
    try:
        body = loads(await request.body())
    except JSONDecodeError as err:
        raise ApiError(400, f"the body is not valid JSON ({err})") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


async def form(request: Request) -> FormData:
    try:
        return await request.form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FILES)
    except ApiError:
        raise
    except Exception as err:  # python-multipart / Starlette parse errors of many kinds
        raise ApiError(400, f"cannot parse the multipart form ({getattr(err, 'detail', err)})") from None


def is_form(request: Request) -> bool:
    """A multipart (or URL-encoded) form, as browsers and Immich's server send."""
    kind = request.headers.get("content-type", "")
    return kind.startswith("multipart/form-data") or kind.startswith("application/x-www-form-urlencoded")


async def form_files(data: FormData, field: str | None = None) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of the uploaded files (of ``field``, or of every field), in the order sent."""
    files = []
    for key, value in data.multi_items():
        if isinstance(value, UploadFile) and (field is None or key == field):
            files.append((value.filename or key, await value.read()))
    return files


def base64_images(items, field: str = "images") -> list[tuple[str, bytes]]:
    """A JSON list of base64 strings -> ``(name, bytes)``, named ``images[i]``."""
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise ApiError(400, f"{field} must be a list of base64 strings")
    out = []
    for i, item in enumerate(items):
        name = f"{field}[{i}]"
        payload = item.split(",", 1)[1] if item.startswith("data:") else item  # a data: URL works too
        try:
            out.append((name, base64.b64decode(payload, validate=True)))
        except (binascii.Error, ValueError):
            raise ApiError(400, f"{name}: not valid base64") from None
    return out


def string_list(value, field: str) -> list[str]:
    """A list of strings, from JSON or from a form field holding a JSON list (or one plain string)."""
    if isinstance(value, str):
        try:
            value = loads(value)
        except JSONDecodeError:
            value = [value]
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ApiError(400, f"{field} must be a list of strings")
    return value


def flag(value, field: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise ApiError(400, f"{field} must be true or false")
