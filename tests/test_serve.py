"""Contract tests of ``ternaryclip serve``: every endpoint against the runtime's own ``encode_*``."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

import ternaryclip  # noqa: E402
from serve_support import build_tiny_tclip, cosine, image_bytes, pil  # noqa: E402
from ternaryclip import kernels  # noqa: E402
from ternaryclip.cli import main  # noqa: E402
from ternaryclip.eval.metrics import class_embeddings, normalize  # noqa: E402
from ternaryclip.serve import ServeSettings, create_app  # noqa: E402
from ternaryclip.serve.immich import serialize_embedding  # noqa: E402
from ternaryclip.serve.jsonio import FastJSONResponse  # noqa: E402

IMAGES = [
    image_bytes((200, 30, 40), seed=1),
    image_bytes((20, 160, 60), (30, 50), seed=2),
    image_bytes((10, 10, 220), seed=3),
]


@pytest.fixture(scope="module")
def tclip_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    return build_tiny_tclip(root / "tiny.tclip", seed=0), build_tiny_tclip(root / "other.tclip", seed=1)


@pytest.fixture(scope="module")
def runtime(tclip_paths):
    return ternaryclip.load(tclip_paths[0])


@pytest.fixture(scope="module")
def client(tclip_paths):
    models = {"tiny": ternaryclip.load(tclip_paths[0]), "other": ternaryclip.load(tclip_paths[1])}
    with TestClient(create_app(models, ServeSettings(max_wait_ms=2))) as c:
        yield c


def test_ping_health_and_metrics(client):
    assert client.get("/ping").text == "pong"
    health = client.get("/health").json()
    assert health["default_model"] == "tiny" and set(health["models"]) == {"tiny", "other"}
    assert health["models"]["tiny"] == {"mode": "fast", "dim": 32, "image_size": 32, "context_length": 16}
    assert health["kernel"] == kernels.fast_gemm_impl() and health["queue_depth"]["tiny/text"] == 0
    assert health["attention"] == kernels.fast_attention_impl()
    client.post("/v1/embed/text", json={"texts": ["a cat", "a dog", "a cow"]})
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'ternaryclip_requests_total{route="/v1/embed/text",status="200"}' in text
    assert 'ternaryclip_batch_size_count{model="tiny",tower="text"}' in text
    assert 'ternaryclip_request_seconds_bucket{le="0.005",route="/ping"}' in text


@pytest.mark.parametrize("normalize_flag", [True, False])
def test_text_embeddings_match_the_runtime(client, runtime, normalize_flag):
    texts = ["a photo of a cat", "a red car", "two dogs"]
    r = client.post("/v1/embed/text", json={"texts": texts, "normalize": normalize_flag})
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "tiny" and body["dim"] == 32
    got, want = np.array(body["embeddings"]), runtime.encode_text(texts, normalize=normalize_flag)
    assert got.shape == want.shape and cosine(got, want).min() >= 0.9999
    assert np.allclose(np.linalg.norm(got, axis=1), np.linalg.norm(want, axis=1), rtol=1e-4)


def test_text_longer_than_the_context_is_truncated_like_the_tokenizer(client, runtime):
    long = " ".join(["word"] * 200)  # far beyond the 16-token context
    got = np.array(client.post("/v1/embed/text", json={"texts": [long]}).json()["embeddings"])
    assert cosine(got, runtime.encode_text([long], normalize=True)).min() >= 0.9999


def test_image_embeddings_from_files_and_base64_match_the_runtime(client, runtime):
    want = runtime.encode_image([pil(b) for b in IMAGES], normalize=True)
    files = [("image", (f"{i}.jpg", b, "image/jpeg")) for i, b in enumerate(IMAGES)]
    from_files = client.post("/v1/embed/image", files=files)
    assert from_files.status_code == 200, from_files.text
    assert cosine(np.array(from_files.json()["embeddings"]), want).min() >= 0.9999
    encoded = [base64.b64encode(b).decode() for b in IMAGES]
    from_json = client.post("/v1/embed/image", json={"images": encoded, "normalize": False})
    assert (
        cosine(np.array(from_json.json()["embeddings"]), runtime.encode_image([pil(b) for b in IMAGES])).min() >= 0.9999
    )


def test_classify_follows_the_eval_recipe(client, runtime):
    labels, templates = ["cat", "car", "sea"], ["a photo of a {c}.", "a drawing of a {c}."]
    r = client.post(
        "/v1/classify",
        files=[("image", (f"{i}.jpg", b)) for i, b in enumerate(IMAGES)],
        data={"labels": json.dumps(labels), "templates": json.dumps(templates)},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    prompts = runtime.encode_text([t.format(c=c) for c in labels for t in templates])
    classifier = class_embeddings(prompts.reshape(3, 2, -1))
    logits = normalize(runtime.encode_image([pil(b) for b in IMAGES])) @ classifier.T
    probs = np.exp(body["logit_scale"] * logits)
    probs /= probs.sum(1, keepdims=True)
    got = np.array([[res["probabilities"][c] for c in labels] for res in body["results"]])
    assert np.allclose(got, probs, atol=1e-4)
    assert [res["label"] for res in body["results"]] == [labels[i] for i in probs.argmax(1)]
    assert [res["file"] for res in body["results"]] == ["0.jpg", "1.jpg", "2.jpg"]


def test_classify_with_json_and_default_templates(client):
    r = client.post("/v1/classify", json={"images": [base64.b64encode(IMAGES[0]).decode()], "labels": ["cat", "dog"]})
    assert r.status_code == 200 and abs(sum(r.json()["results"][0]["probabilities"].values()) - 1) < 1e-5
    assert client.post("/v1/classify", json={"images": [], "labels": ["a"]}).status_code == 400
    bad_template = client.post(
        "/v1/classify",
        json={"images": [base64.b64encode(IMAGES[0]).decode()], "labels": ["a"], "templates": ["no slot"]},
    )
    assert bad_template.status_code == 400 and "{c}" in bad_template.json()["error"]


def test_several_models_are_served_by_name(client, tclip_paths):
    other = ternaryclip.load(tclip_paths[1])
    got = client.post("/v1/embed/text", json={"texts": ["a cat"], "model": "other"}).json()
    assert got["model"] == "other" and cosine(got["embeddings"], other.encode_text(["a cat"])).min() >= 0.9999
    unknown = client.post("/v1/embed/text", json={"texts": ["a cat"], "model": "nope"})
    assert unknown.status_code == 400 and "nope" in unknown.json()["error"]


# ------------------------------------------------------------------ Immich's machine-learning contract
BOUNDARY = "----formdata-undici-038219475601"


def immich_form(entries: dict, image: bytes | None = None, text: str | None = None) -> tuple[bytes, dict]:
    """The body Immich's server sends (Node's FormData, as machine-learning.repository.ts builds it):
    ``entries`` = JSON.stringify(request), then the image as a Blob (file name "blob") or ``text``."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="entries"\r\n\r\n{json.dumps(entries, separators=(",", ":"))}\r\n'.encode()
    ]
    if image is not None:
        head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="blob"\r\nContent-Type: application/octet-stream\r\n\r\n'
        parts.append(head.encode() + image + b"\r\n")
    if text is not None:
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="text"\r\n\r\n{text}\r\n'.encode())
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts), {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def test_immich_visual_search_request(client, runtime):
    body, headers = immich_form({"clip": {"visual": {"modelName": "ViT-B-32__openai"}}}, image=IMAGES[1])
    r = client.post("/predict", content=body, headers=headers)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"clip", "imageHeight", "imageWidth"}
    assert (answer["imageWidth"], answer["imageHeight"]) == (30, 50)
    assert isinstance(answer["clip"], str)  # Immich stores the string as the vector, unparsed
    vector = json.loads(answer["clip"])
    assert len(vector) == 32 and cosine(vector, runtime.encode_image([pil(IMAGES[1])])[0]) >= 0.9999


def test_immich_text_search_request(client, runtime):
    entries = {"clip": {"textual": {"modelName": "ViT-B-32__openai", "options": {"language": "en-US"}}}}
    body, headers = immich_form(entries, text="a dog on the beach")
    answer = client.post("/predict", content=body, headers=headers).json()
    assert set(answer) == {"clip"}
    assert cosine(json.loads(answer["clip"]), runtime.encode_text(["a dog on the beach"])[0]) >= 0.9999
    by_name = client.post(
        "/predict", content=immich_form({"clip": {"textual": {"modelName": "other"}}}, text="x")[0], headers=headers
    )
    other = client.app.state.service.models["other"]  # a modelName that is ours selects that model
    assert cosine(json.loads(by_name.json()["clip"]), other.encode_text(["x"])[0]) >= 0.9999


def test_immich_serialization_round_trips_float32():
    rng = np.random.default_rng(0)
    vector = (rng.normal(size=512) * 10.0 ** rng.integers(-9, 3, 512)).astype(np.float32)  # tiny and large too
    text = serialize_embedding(vector)
    assert np.array_equal(np.array(json.loads(text), np.float32), vector) and " " not in text


def test_embedding_answers_carry_the_exact_float32_values():
    """The JSON writer must not round: a float32 read back from an answer is the server's float32."""
    rng = np.random.default_rng(1)
    out = (rng.normal(size=(3, 64)) * 10.0 ** rng.integers(-9, 3, (3, 64))).astype(np.float32)
    body = json.loads(FastJSONResponse({"embeddings": out}).body)  # read by the standard library
    assert np.array_equal(np.array(body["embeddings"], np.float32), out)


@pytest.mark.parametrize(
    "entries, fragment",
    [
        (
            {
                "facial-recognition": {
                    "detection": {"modelName": "buffalo_l", "options": {"minScore": 0.7}},
                    "recognition": {"modelName": "buffalo_l"},
                }
            },
            "facial-recognition",
        ),
        (
            {"ocr": {"detection": {"modelName": "PP-OCRv5_mobile"}, "recognition": {"modelName": "PP-OCRv5_mobile"}}},
            "ocr",
        ),
        ({"clip": {"visual": {}}}, "modelName"),
        ({}, "entries"),
    ],
)
def test_immich_tasks_not_served_get_a_clear_422(client, entries, fragment):
    body, headers = immich_form(entries, image=IMAGES[0])
    r = client.post("/predict", content=body, headers=headers)
    assert r.status_code == 422 and fragment in r.json()["error"]


def test_immich_request_without_payload_or_entries(client):
    body, headers = immich_form({"clip": {"visual": {"modelName": "ViT-B-32__openai"}}})
    assert client.post("/predict", content=body, headers=headers).status_code == 400
    assert client.post("/predict", data={"text": "a cat"}).status_code == 422  # no entries
    broken, headers = immich_form({"clip": {"visual": {"modelName": "m"}}}, image=b"\x89PNG\r\n broken")
    r = client.post("/predict", content=broken, headers=headers)
    assert r.status_code == 400 and "blob" in r.json()["error"]


# ------------------------------------------------------------------ torch-free, command line
def test_server_never_imports_torch(tclip_paths):
    code = (
        "import sys; from starlette.testclient import TestClient; import ternaryclip; "
        "from ternaryclip.serve import create_app; "
        "c = TestClient(create_app({'m': ternaryclip.load(sys.argv[1])})); "
        "assert c.post('/v1/embed/text', json={'texts': ['a cat']}).status_code == 200; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code, str(tclip_paths[0])], check=True)


def test_serve_command_line_errors_are_one_line(tmp_path, capsys):
    assert main(["serve"]) == 2
    assert main(["serve", str(tmp_path / "missing.tclip")]) == 2
    assert main(["serve", "--model", "no-equals-sign"]) == 2
    assert main(["serve", str(tmp_path / "x.tclip"), "--max-batch", "0"]) == 2
    assert main(["serve", str(tmp_path / "x.tclip"), "--streams", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5 and all(line.startswith("ternaryclip serve: error:") for line in err)


def test_more_streams_than_kernel_threads_is_refused_in_one_line(tclip_paths, capsys):
    assert main(["serve", str(tclip_paths[0]), "--threads", "1", "--streams", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--streams 2 needs at least as many kernel threads, got 1" in err[0]


def test_extra_routes_share_the_models_and_cannot_shadow_the_api(tclip_paths, runtime):
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    async def search(request):
        vector = await request.app.state.service.embed_texts([request.query_params["q"]])
        return JSONResponse({"vector": vector[0].tolist()})

    async def shadow(request):
        return PlainTextResponse("shadowed")

    extra = [Route("/search", search), Route("/ping", shadow)]
    with TestClient(create_app({"tiny": runtime}, extra_routes=extra)) as client:
        got = client.get("/search", params={"q": "a cat"}).json()["vector"]
        assert cosine(got, runtime.encode_text(["a cat"])[0]) >= 0.9999
        assert client.get("/ping").text == "pong"
        assert 'route="/search"' in client.get("/metrics").text
