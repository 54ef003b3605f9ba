"""Load smoke: a real uvicorn on 127.0.0.1, 8 clients for 3 s, mixed text / image with malformed requests.

The bigger bounded load test (64 clients x 20 s, memory readings, against batching off and an
open_clip process) is ``benchmarks/serve.py``.
"""

from __future__ import annotations

import re

import httpx
import pytest

pytest.importorskip("uvicorn")
import ternaryclip  # noqa: E402
from serve_support import build_tiny_tclip, image_bytes  # noqa: E402
from ternaryclip.serve import ServeSettings, create_app  # noqa: E402
from ternaryclip.serve.loadgen import LocalServer, run_load  # noqa: E402


def metric(text: str, name: str, **labels) -> float:
    selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{name}{{{selector}}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_mixed_load_with_malformed_requests_on_a_real_server(tmp_path):
    model = ternaryclip.load(build_tiny_tclip(tmp_path / "tiny.tclip"))
    app = create_app({"tiny": model}, ServeSettings(max_wait_ms=5))
    with LocalServer(app) as url:
        result = run_load(
            url, clients=8, seconds=3, image=image_bytes(), image_fraction=0.3, malformed_fraction=0.1, seed=1
        )
        metrics = httpx.get(url + "/metrics").text
        health = httpx.get(url + "/health").json()
    assert result.failures == []  # every valid request 200, every malformed one 4xx
    assert result.count("text") > 10 and result.count("image") > 5 and result.count("malformed") > 0
    # Every valid item went through exactly one batch: the batch-size sums count them.
    assert metric(metrics, "ternaryclip_batch_size_sum", model="tiny", tower="text") == result.count("text")
    assert metric(metrics, "ternaryclip_batch_size_sum", model="tiny", tower="image") == result.count("image")
    answered = metric(metrics, "ternaryclip_requests_total", route="/v1/embed/text", status="200")
    assert answered == result.count("text")
    assert health["queue_depth"] == {"tiny/text": 0, "tiny/image": 0} and health["decoding"] == 0
