"""The photo search page and its JSON API as Starlette routes, mounted by ``ternaryclip serve --db``.

Everything is under ``/photos``: the page (static HTML + JS, no build step, nothing fetched from the
network), ``/photos/api/search?q=``, ``/photos/api/like/{id}``, ``/photos/api/duplicates?threshold=``,
thumbnails and originals by id.  An original is served only by its database id, so no path from a
request ever reaches the file system.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .encoder import file_id
from .search import Hit, Searcher
from .store import PhotoStore

STATIC = Path(__file__).parent / "static"
MAX_K = 200


def _hit_json(hit: Hit) -> dict:
    return {
        **hit.as_dict(),
        "name": Path(hit.path).name,
        "thumbnail": f"/photos/api/thumbnail/{hit.id}",
        "photo": f"/photos/api/photo/{hit.id}",
    }


def _k(request: Request) -> int:
    try:
        k = int(request.query_params.get("k", 24))
    except ValueError:
        raise ValueError("k must be an integer") from None
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be 1..{MAX_K}")
    return k


def _threshold(request: Request) -> float:
    try:
        threshold = float(request.query_params.get("threshold", 0.95))
    except ValueError:
        raise ValueError("threshold must be a number") from None
    if not 0 < threshold <= 1:
        raise ValueError("threshold must be in (0, 1]")
    return threshold


def _duplicate_json(photo: dict) -> dict:
    return {
        **photo,
        "similarity": round(photo["similarity"], 4),
        "name": Path(photo["path"]).name,
        "thumbnail": f"/photos/api/thumbnail/{photo['id']}",
        "photo": f"/photos/api/photo/{photo['id']}",
    }


async def _query_vector(request: Request, searcher: Searcher, text: str) -> np.ndarray:
    """The text's embedding from the server's batched default model (or the searcher's own encoder)."""
    if not text.strip():
        raise ValueError("the search text is empty")
    service = getattr(request.app.state, "service", None)
    if service is not None:
        return (await service.embed_texts([text]))[0]
    return (await run_in_threadpool(searcher._need_encoder().encode_texts, [text]))[0]


def photo_routes(searcher: Searcher) -> list:
    """The page's routes for one database; a server adds them to its own (``create_app(extra_routes=...)``)."""

    def results(hits: list[Hit]) -> JSONResponse:
        return JSONResponse({"results": [_hit_json(h) for h in hits]})

    async def search(request: Request) -> Response:
        try:
            k = _k(request)
            query = await _query_vector(request, searcher, request.query_params.get("q", ""))
            return results(await run_in_threadpool(searcher.by_vector, query, k))
        except ValueError as err:
            return JSONResponse({"error": str(err)}, status_code=400)

    def like(request: Request) -> Response:
        try:
            return results(searcher.like(request.path_params["photo_id"], _k(request)))
        except KeyError:
            return JSONResponse({"error": "no such photo"}, status_code=404)
        except ValueError as err:
            return JSONResponse({"error": str(err)}, status_code=400)

    async def duplicates(request: Request) -> Response:
        try:
            threshold = _threshold(request)
        except ValueError as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        groups = await run_in_threadpool(searcher.duplicates, threshold)
        return JSONResponse({"threshold": threshold, "groups": [[_duplicate_json(p) for p in g] for g in groups]})

    def thumbnail(request: Request) -> Response:
        data = searcher.thumbnail(request.path_params["photo_id"])
        if data is None:
            return JSONResponse({"error": "no such photo"}, status_code=404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    def photo(request: Request) -> Response:
        path = searcher.path_of(request.path_params["photo_id"])
        if path is None or not Path(path).is_file():
            return JSONResponse({"error": "no such photo (moved or deleted since indexing?)"}, status_code=404)
        return FileResponse(path)

    def stats(request: Request) -> Response:
        return JSONResponse({"photos": searcher.count()})

    return [
        Route("/photos", lambda request: RedirectResponse("/photos/")),
        Route("/photos/api/search", search),
        Route("/photos/api/like/{photo_id:int}", like),
        Route("/photos/api/duplicates", duplicates),
        Route("/photos/api/thumbnail/{photo_id:int}", thumbnail),
        Route("/photos/api/photo/{photo_id:int}", photo),
        Route("/photos/api/stats", stats),
        Mount("/photos/", StaticFiles(directory=STATIC, html=True)),
    ]


def photo_routes_for(db: str | os.PathLike, model_path: str | os.PathLike) -> list:
    """Routes for ``ternaryclip serve MODEL --db DB``: the database must have been indexed with MODEL."""
    store = PhotoStore(db, readonly=True)
    stored = store.get_meta("model")
    model_id = file_id(model_path)
    if stored is not None and json.loads(stored)["id"] != model_id:
        raise ValueError(f"{db} was indexed with {json.loads(stored)['id']}, not {model_id}: serve that model")
    return photo_routes(Searcher(store))
