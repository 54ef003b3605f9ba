"""``POST /predict``: the request and answer of Immich's machine-learning service, for CLIP search.

Immich's server sends a multipart form: ``entries``, a JSON object ``{task: {type: {"modelName": ...,
"options": {...}}}}``, and either the image file in ``image`` or the query in ``text``.  Smart search
uses task ``clip`` with type ``visual`` (an image) or ``textual`` (a query).  The answer is
``{"clip": "<embedding as a JSON array in a string>"}``, plus ``imageHeight`` / ``imageWidth`` for an
image; Immich's server stores that string as the vector as it is.  Faces, OCR and other tasks are
not served: they get 422 naming the task.  Immich asks for its own model names (e.g.
``ViT-B-32__openai``); a name that is not one of ours gets the default model, whose embedding size
must be the one Immich expects for the name it asks for.
"""

from __future__ import annotations

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..runtime.preprocess import ImageError
from . import inputs
from .errors import ApiError
from .jsonio import FastJSONResponse, dumps, loads
from .service import EmbeddingService

SEARCH_TASK = "clip"
SEARCH_TYPES = ("visual", "textual")


def parse_entries(raw) -> dict[str, dict]:
    """``entries`` -> ``{type: entry}`` for the CLIP task; 422 for a malformed request or a task not served."""
    try:
        request = loads(raw) if isinstance(raw, str) else None
        if not isinstance(request, dict) or not request:
            raise ValueError("entries must be a non-empty JSON object")
        for task, types in request.items():
            if task != SEARCH_TASK:
                raise ApiError(422, f"task {task!r} is not served here: only {SEARCH_TASK!r} (visual, textual)")
            if not isinstance(types, dict) or not types:
                raise ValueError(f"{task} must map model types to entries")
            for kind, entry in types.items():
                if kind not in SEARCH_TYPES:
                    raise ApiError(422, f"model type {kind!r} of task {task!r} is not served: only visual and textual")
                if not isinstance(entry, dict) or not isinstance(entry["modelName"], str):
                    raise ValueError(f"{task}/{kind} needs modelName")
                if not isinstance(entry.get("options", {}), dict):
                    raise ValueError(f"{task}/{kind} options must be an object")
        return request[SEARCH_TASK]
    except ApiError:
        raise
    except (ValueError, KeyError, TypeError) as err:
        raise ApiError(422, f"invalid entries ({err})") from None


def serialize_embedding(vector: np.ndarray) -> str:
    """A JSON array in a string, each float32 in its shortest round-trip form: Immich's own writer (orjson)."""
    return dumps(np.ascontiguousarray(vector, np.float32)).decode()


def served_model(service: EmbeddingService, name: str) -> str:
    return name if name in service.models else service.default_model


async def predict(request: Request) -> Response:
    service = service_of(request)
    if not inputs.is_form(request):
        raise ApiError(422, "send a multipart form with entries and image or text")
    form = await inputs.form(request)
    entries = parse_entries(form.get("entries"))
    images = await inputs.form_files(form, "image")
    text = form.get("text")
    if not images and not isinstance(text, str):
        detail = "; requests by assetId are not served" if form.get("assetId") else ""
        raise ApiError(400, f"either image or text must be provided{detail}")
    return FastJSONResponse(await service.guard(request, _answer(service, entries, images[:1], text)))


async def _answer(service: EmbeddingService, entries: dict, images, text) -> dict:
    answer = {}
    if images:  # Immich answers from the image when both come
        if "visual" not in entries:
            raise ApiError(422, "an image needs a clip visual entry")
        model = served_model(service, entries["visual"]["modelName"])
        try:
            (decoded,) = await service.decode_images(images, model)
        except ImageError as err:
            raise ApiError(400, str(err)) from None
        answer[SEARCH_TASK] = serialize_embedding((await service.embed_pixels([decoded], model))[0])
        answer["imageHeight"], answer["imageWidth"] = decoded.height, decoded.width
    else:
        if "textual" not in entries:
            raise ApiError(422, "a text needs a clip textual entry")
        model = served_model(service, entries["textual"]["modelName"])
        answer[SEARCH_TASK] = serialize_embedding((await service.embed_texts([text], model))[0])
    return answer


def service_of(request: Request) -> EmbeddingService:
    return request.app.state.service


ROUTES = [Route("/predict", predict, methods=["POST"])]
