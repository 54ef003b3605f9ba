"""`ternaryclip serve`: an HTTP embedding server (Immich-compatible /predict) over .tclip models."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..choices import MODES


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(
        name,
        help="serve embeddings, zero-shot classification and Immich's /predict over HTTP",
        description="Serve .tclip models over HTTP with dynamic batching: /v1/embed/text, /v1/embed/image, "
        "/v1/classify, Immich's machine-learning /predict (CLIP search), /ping, /health, /metrics. "
        "Needs the serve extra: pip install 'ternaryclip[serve]'.",
    )
    p.add_argument(
        "model_path",
        nargs="?",
        metavar="MODEL",
        help="a .tclip file (served as its file name's stem), or hf-hub:ORG/NAME / hf:ORG/NAME (converted once)",
    )
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH", help="serve more models (repeatable)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=3003, help="port (default 3003, Immich's machine-learning port)")
    p.add_argument(
        "--mode", choices=MODES, default="fast", help="fast: int8 activations; exact: float; bf16: rounded to bf16"
    )
    p.add_argument("--threads", type=int, help="CPU threads for the kernels (default: all)")
    p.add_argument(
        "--streams",
        type=int,
        default=1,
        help="batches encoded at once, the threads split between them (default 1: each batch on every "
        "thread, the lowest latency for one request; the number of cores, one thread each: the most "
        "requests a second under concurrent load)",
    )
    p.add_argument("--max-batch", type=int, default=32, help="items encoded together per tower (1: no batching)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a request waits for others to batch with")
    p.add_argument("--max-queue", type=int, default=256, help="items waiting per tower before 503 + Retry-After")
    p.add_argument("--max-body-mb", type=float, default=32.0, help="largest request body (413 beyond)")
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="largest image in pixels (400 beyond)")
    p.add_argument("--timeout-s", type=float, default=30.0, help="per-request time limit (504 beyond)")
    p.add_argument("--decode-workers", type=int, default=2, help="threads decoding images")
    p.add_argument("--db", help="photo database from `ternaryclip index`: also serve the search page at /photos/")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))


def model_paths(args: argparse.Namespace) -> dict[str, Path]:
    """``NAME -> PATH`` in the order given; the positional model first (it is the default)."""
    paths = {Path(args.model_path).stem: Path(args.model_path)} if args.model_path else {}
    for spec in args.model:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--model wants NAME=PATH, got {spec!r}")
        if name in paths:
            raise ValueError(f"model name {name!r} given twice")
        paths[name] = Path(path)
    if not paths:
        raise ValueError("give a .tclip file or --model NAME=PATH")
    from .model_args import hub_tclip, is_hub_name

    paths = {name: hub_tclip(str(path)) if is_hub_name(str(path)) else path for name, path in paths.items()}
    for path in paths.values():
        if not path.is_file():
            raise FileNotFoundError(f"no such model file: {path}")
    return paths


def settings_from(args: argparse.Namespace):
    from ..serve import ServeSettings

    return ServeSettings(
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_body_mb=args.max_body_mb,
        max_pixels=args.max_pixels,
        timeout_s=args.timeout_s,
        decode_workers=args.decode_workers,
        streams=args.streams,
    )


def run(args: argparse.Namespace, extra_routes=()) -> int:
    try:
        import uvicorn

        from ..serve import create_app
    except ImportError as err:
        raise ValueError(
            f"serve needs the serve extra ({err.name} is missing): pip install 'ternaryclip[serve]'"
        ) from None
    from ..runtime import load

    settings = settings_from(args)
    paths = model_paths(args)
    if getattr(args, "db", None):  # the photo search page, on the default model
        from ..photos.web import photo_routes_for

        extra_routes = [*extra_routes, *photo_routes_for(args.db, next(iter(paths.values())))]
    models = {name: load(path, mode=args.mode, threads=args.threads) for name, path in paths.items()}
    app = create_app(models, settings, extra_routes=extra_routes)
    print(f"serving {', '.join(models)} on http://{args.host}:{args.port} (mode {args.mode})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
