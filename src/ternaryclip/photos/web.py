"""The photo search page and its JSON API as Starlette routes, mounted by ``ternaryclip serve --db``.

Everything is under ``/photos``: the page (static HTML + JS, no build step, nothing fetched from the
network), ``/photos/api/search?q=``, ``/photos/api/like/{id}``, thumbnails and originals by id.  An
original is served only by its database id, so no path from a request ever reaches the file system.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .search import Hit, Searcher

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


def photo_routes(searcher: Searcher) -> list:
    """The page's routes for one database; a server adds them to its own."""

    def results(hits: list[Hit]) -> JSONResponse:
        return JSONResponse({"results": [_hit_json(h) for h in hits]})

    def search(request: Request) -> Response:
        try:
            return results(searcher.by_text(request.query_params.get("q", ""), _k(request)))
        except ValueError as err:
            return JSONResponse({"error": str(err)}, status_code=400)

    def like(request: Request) -> Response:
        try:
            return results(searcher.like(request.path_params["photo_id"], _k(request)))
        except KeyError:
            return JSONResponse({"error": "no such photo"}, status_code=404)
        except ValueError as err:
            return JSONResponse({"error": str(err)}, status_code=400)

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
        Route("/photos/api/thumbnail/{photo_id:int}", thumbnail),
        Route("/photos/api/photo/{photo_id:int}", photo),
        Route("/photos/api/stats", stats),
        Mount("/photos/", StaticFiles(directory=STATIC, html=True)),
    ]


def create_photo_app(db: str, model: str, threads: int | None = None):
    """A server for the page alone (``ternaryclip serve --db`` adds the same routes to the model server)."""
    from starlette.applications import Starlette

    from .encoder import RuntimeEncoder
    from .store import PhotoStore

    store = PhotoStore(db, readonly=True)
    searcher = Searcher(store, RuntimeEncoder(model, threads=threads))
    routes = [Route("/", lambda request: RedirectResponse("/photos/")), *photo_routes(searcher)]
    return Starlette(routes=routes, on_shutdown=[store.close])
