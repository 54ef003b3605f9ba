"""The ASGI app (Starlette): routes, limits, metrics and JSON errors around an EmbeddingService.

>>> app = create_app({"b32": ternaryclip.load("b32.tclip")}, ServeSettings(max_batch=16))   # doctest: +SKIP
>>> uvicorn.run(app, host="127.0.0.1", port=3003)                                          # doctest: +SKIP

More routes (a search page, ...) join with ``extra_routes``; their handlers reach the models through
``request.app.state.service`` and share its batchers, limits and metrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from ..runtime import TernaryCLIP
from .errors import EXCEPTION_HANDLERS
from .immich import ROUTES as IMMICH_ROUTES
from .limits import BodySizeLimit
from .metrics import MetricsMiddleware, ServeMetrics
from .routes import ROUTES
from .service import EmbeddingService
from .settings import ServeSettings


def create_app(
    models: Mapping[str, TernaryCLIP],
    settings: ServeSettings | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """An app serving ``models`` (the first is the default); ``extra_routes`` are mounted after ours."""
    settings = settings or ServeSettings()
    metrics = ServeMetrics()
    service = EmbeddingService(models, settings, metrics)
    routes = [*ROUTES, *IMMICH_ROUTES, *extra_routes]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await service.close()

    app = Starlette(
        routes=routes,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            Middleware(MetricsMiddleware, metrics=metrics, routes={getattr(r, "path", "") for r in routes}),
            Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
        ],
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.settings = settings
    return app
