"""A SigLIP .tclip everywhere the runtime goes: serve (/v1/* and Immich's /predict), eval and info."""

from __future__ import annotations

import json

import numpy as np
import pytest

from siglip_support import tiny_open_clip_siglip, write_tiny_tokenizer

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

import ternaryclip  # noqa: E402
from serve_support import cosine, image_bytes, pil  # noqa: E402
from ternaryclip.cli import main  # noqa: E402
from ternaryclip.eval.metrics import class_embeddings, normalize  # noqa: E402
from ternaryclip.serve import ServeSettings, create_app  # noqa: E402

IMAGES = [image_bytes((200, 30, 40), seed=1), image_bytes((20, 160, 60), (30, 50), seed=2)]


@pytest.fixture(scope="module")
def siglip_tclip(tmp_path_factory):
    from ternaryclip.quant import TernaryConfig, ternarize_

    root = tmp_path_factory.mktemp("siglip")
    folder = write_tiny_tokenizer(root / "tok")
    model = ternarize_(tiny_open_clip_siglip(seed=2), TernaryConfig(scope="all", embedding=True))
    return ternaryclip.save(model, root / "siglip.tclip", tokenizer=folder)


@pytest.fixture(scope="module")
def runtime(siglip_tclip):
    return ternaryclip.load(siglip_tclip)


@pytest.fixture(scope="module")
def client(siglip_tclip):
    with TestClient(create_app({"siglip": ternaryclip.load(siglip_tclip)}, ServeSettings(max_wait_ms=2))) as c:
        yield c


def test_text_and_image_embeddings_match_the_runtime(client, runtime):
    texts = ["a photo of a cat", "A red car!"]
    got = np.array(client.post("/v1/embed/text", json={"texts": texts}).json()["embeddings"])
    assert cosine(got, runtime.encode_text(texts)).min() >= 0.9999
    files = [("image", (f"{i}.jpg", b, "image/jpeg")) for i, b in enumerate(IMAGES)]
    got = np.array(client.post("/v1/embed/image", files=files).json()["embeddings"])
    assert cosine(got, runtime.encode_image([pil(b) for b in IMAGES])).min() >= 0.9999


def test_classify_uses_the_sigmoid_of_scale_and_bias(client, runtime):
    labels, templates = ["cat", "car", "sea"], ["a photo of a {c}."]
    r = client.post(
        "/v1/classify",
        files=[("image", (f"{i}.jpg", b)) for i, b in enumerate(IMAGES)],
        data={"labels": json.dumps(labels), "templates": json.dumps(templates)},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    scale = float(np.exp(runtime.data.floats["logit_scale"]))
    bias = float(runtime.data.floats["logit_bias"])
    assert body["logit_scale"] == pytest.approx(scale) and body["logit_bias"] == pytest.approx(bias)
    classifier = class_embeddings(
        runtime.encode_text([t.format(c=c) for c in labels for t in templates]).reshape(3, 1, -1)
    )
    logits = normalize(runtime.encode_image([pil(b) for b in IMAGES])) @ classifier.T
    expected = 1 / (1 + np.exp(-(scale * logits + bias)))
    got = np.array([[res["probabilities"][c] for c in labels] for res in body["results"]])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


def test_immich_predict_text_and_image(client, runtime):
    boundary = "----tclip"
    for name, part, reference in (
        ("textual", 'name="text"\r\n\r\na dog on the beach', runtime.encode_text(["a dog on the beach"])[0]),
        ("visual", None, runtime.encode_image([pil(IMAGES[0])])[0]),
    ):
        entries = json.dumps({"clip": {name: {"modelName": "ViT-B-16-SigLIP2__webli"}}})
        body = f'--{boundary}\r\nContent-Disposition: form-data; name="entries"\r\n\r\n{entries}\r\n'.encode()
        if part is None:
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="blob"\r\n\r\n'
            body += head.encode() + IMAGES[0] + b"\r\n"
        else:
            body += f"--{boundary}\r\nContent-Disposition: form-data; {part}\r\n".encode()
        body += f"--{boundary}--\r\n".encode()
        r = client.post("/predict", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code == 200, r.text
        assert cosine(json.loads(r.json()["clip"]), reference) >= 0.9999


def test_eval_runs_a_siglip_file(siglip_tclip):
    from ternaryclip.eval.datasets import synthetic_sets
    from ternaryclip.eval.run import evaluate_set, load_model

    model = load_model(str(siglip_tclip), mode="exact", threads=1)
    result = evaluate_set(model, synthetic_sets("shape", image_size=32, n=40)[0], progress=False)
    assert 0.0 <= result["metrics"]["acc1"] <= 1.0


def test_info_names_the_siglip_parts(siglip_tclip, capsys):
    assert main(["info", str(siglip_tclip)]) == 0
    out = capsys.readouterr().out
    assert "siglip  map pool head" in out and "not causal" in out and "tokenizer.json inside" in out
    assert "GELU / GELU-tanh" in out
