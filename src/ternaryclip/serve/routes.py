"""The server's own endpoints: embeddings, zero-shot classification, health, metrics.

Every handler reads its whole body first (bounded by the body-size middleware), then does its work
under ``service.guard`` (timeout, disconnect).
"""

from __future__ import annotations

import numpy as np
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ..eval.datasets import DEFAULT_TEMPLATES
from ..eval.metrics import class_embeddings, zero_shot_logits, zero_shot_prompts
from ..runtime.preprocess import ImageError
from . import inputs
from .errors import ApiError
from .jsonio import FastJSONResponse
from .service import EmbeddingService


def service_of(request: Request) -> EmbeddingService:
    return request.app.state.service


async def ping(request: Request) -> Response:
    return PlainTextResponse("pong")


async def health(request: Request) -> Response:
    return FastJSONResponse(service_of(request).health())


async def metrics(request: Request) -> Response:
    body, content_type = service_of(request).metrics.render()
    return Response(body, media_type=content_type)


def embeddings_response(service: EmbeddingService, model: str | None, out: np.ndarray) -> FastJSONResponse:
    name = service.model_name(model)
    return FastJSONResponse(
        {"embeddings": np.ascontiguousarray(out, np.float32), "model": name, "dim": int(out.shape[1])}
    )


async def embed_text(request: Request) -> Response:
    """``{"texts": [...], "normalize": true, "model": optional}`` -> embeddings."""
    service, body = service_of(request), await inputs.json_object(request)
    texts, model = body.get("texts"), body.get("model")
    if not isinstance(texts, list):
        raise ApiError(400, 'the body needs "texts": a list of strings')
    normalize = inputs.flag(body.get("normalize"), "normalize", True)
    out = await service.guard(request, service.embed_texts(texts, model, normalize))
    return embeddings_response(service, model, out)


async def image_request(request: Request) -> tuple[list[tuple[str, bytes]], dict]:
    """Images and the other fields, from a multipart form (files) or JSON (``images``: base64 strings)."""
    if inputs.is_form(request):
        form = await inputs.form(request)
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        return await inputs.form_files(form), fields
    body = await inputs.json_object(request)
    return inputs.base64_images(body.get("images")), body


async def embed_image(request: Request) -> Response:
    """Multipart image files, or JSON ``{"images": [base64, ...]}``; ``normalize`` and ``model`` optional."""
    service = service_of(request)
    files, fields = await image_request(request)
    if not files:
        raise ApiError(400, 'no image: send multipart files or JSON {"images": [base64, ...]}')
    model, normalize = fields.get("model"), inputs.flag(fields.get("normalize"), "normalize", True)
    out = await service.guard(request, _embed_files(service, files, model, normalize))
    return embeddings_response(service, model, out)


async def _embed_files(service: EmbeddingService, files, model, normalize) -> np.ndarray:
    try:
        return await service.embed_images(files, model, normalize)
    except ImageError as err:
        raise ApiError(400, str(err)) from None


async def classify(request: Request) -> Response:
    """Images + ``labels`` (+ ``templates`` with ``{c}``) -> per-image probabilities over the labels.

    The zero-shot recipe of ``ternaryclip eval``: each label's prompt embeddings averaged into its
    classifier row, cosine with the image, softmax at the model's logit scale.  A SigLIP answers as it
    was trained, label by label: ``sigmoid(logit_scale * cosine + logit_bias)`` (the labels' values then
    need not sum to 1).
    """
    service = service_of(request)
    files, fields = await image_request(request)
    if not files:
        raise ApiError(400, "no image to classify")
    labels = inputs.string_list(fields.get("labels"), "labels")
    templates = (
        inputs.string_list(fields.get("templates"), "templates") if fields.get("templates") else list(DEFAULT_TEMPLATES)
    )
    if not labels:
        raise ApiError(400, "labels must name at least one class")
    if any("{c}" not in t for t in templates):
        raise ApiError(400, "every template needs {c} where the label goes")
    model = service.model_name(fields.get("model"))
    logits = await service.guard(request, _zero_shot_logits(service, files, labels, templates, model))
    scale, bias = logit_scale(service.models[model]), logit_bias(service.models[model])
    probs = _softmax(scale * logits) if bias is None else _sigmoid(scale * logits + bias)
    results = [
        {"file": name, "label": labels[int(p.argmax())], "probabilities": dict(zip(labels, p.tolist()))}
        for (name, _), p in zip(files, probs)
    ]
    answer = {"model": model, "labels": labels, "logit_scale": scale, "results": results}
    if bias is not None:
        answer["logit_bias"] = bias
    return FastJSONResponse(answer)


async def _zero_shot_logits(service: EmbeddingService, files, labels, templates, model) -> np.ndarray:
    prompts = zero_shot_prompts(labels, templates)
    text = await service.embed_texts(prompts, model, normalize=False)
    classifier = class_embeddings(text.reshape(len(labels), len(templates), -1))
    return zero_shot_logits(await _embed_files(service, files, model, False), classifier)


def logit_scale(model) -> float:
    """The model's learned temperature (exp of ``logit_scale``) when the file has it, else CLIP's 100."""
    value = model.data.floats.get("logit_scale")
    return float(np.exp(np.asarray(value, np.float64).reshape(-1)[0])) if value is not None else 100.0


def logit_bias(model) -> float | None:
    """A SigLIP's learned bias (its file holds ``logit_bias``); None for a CLIP."""
    value = model.data.floats.get("logit_bias")
    return float(np.asarray(value, np.float64).reshape(-1)[0]) if value is not None else None


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # 1 / (1 + exp(-x)) without overflow


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


ROUTES = [
    Route("/ping", ping, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/v1/embed/text", embed_text, methods=["POST"]),
    Route("/v1/embed/image", embed_image, methods=["POST"]),
    Route("/v1/classify", classify, methods=["POST"]),
]
