"""Zero-shot and retrieval metrics: hand-computed cases and CLIP_benchmark's own functions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ternaryclip.eval.metrics import class_embeddings, classification_metrics, normalize, retrieval_metrics


def test_hand_computed_classification():
    classifier = np.eye(3, dtype=np.float32)
    images = np.array([[1, 0, 0], [0, 1, 0], [0, 0.9, 1], [1, 0.5, 0]], np.float32)
    target = np.array([0, 1, 1, 2])
    m = classification_metrics(images, classifier, target)
    assert m["acc1"] == 0.5 and math.isnan(m["acc5"])
    assert m["mean_per_class_recall"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_hand_computed_retrieval():
    images = np.eye(3, dtype=np.float32)
    # captions 0,1 -> image 0, caption 2 -> image 1, caption 3 -> image 2 (but it looks like image 0);
    # caption 1 is image 2's nearest caption, so image 2 misses at rank 1 too.
    texts = np.array([[1, 0, 0], [0.9, 0.1, 0.5], [0, 1, 0], [1, 0, 0.2]], np.float32)
    m = retrieval_metrics(images, texts, np.array([0, 0, 1, 2]), ks=(1, 2))
    assert m["image_retrieval_recall@1"] == 0.75  # caption 3 retrieves image 0
    assert m["text_retrieval_recall@1"] == pytest.approx(2 / 3)  # image 2 ranks caption 1 first
    assert m["image_retrieval_recall@2"] == 1.0


def test_class_embeddings_average_normalized_prompts():
    prompts = np.array([[[3, 0], [0, 1]], [[0, 2], [0, 5]]], np.float32)
    np.testing.assert_allclose(class_embeddings(prompts), [[2**-0.5, 2**-0.5], [0, 1]], atol=1e-6)


class _Embeddings(torch.nn.Module):
    """A 'model' whose encoders look up fixed embeddings, so CLIP_benchmark can run on them."""

    def __init__(self, images, texts):
        super().__init__()
        self.images, self.texts = torch.from_numpy(images), torch.from_numpy(texts)

    def encode_image(self, index):
        return self.images[index]

    def encode_text(self, index):
        return self.texts[index]


def test_same_numbers_as_clip_benchmark():
    from clip_benchmark.metrics import zeroshot_classification as zsc
    from clip_benchmark.metrics import zeroshot_retrieval as zsr

    from ternaryclip.eval.clip_benchmark import register

    register()  # CLIP_benchmark 1.6's accuracy() fails under NumPy 2; the plugin swaps in the same formula

    rng = np.random.default_rng(0)
    n, classes, templates, dim = 60, 7, 3, 16
    images = rng.normal(size=(n, dim)).astype(np.float32)
    prompts = rng.normal(size=(classes * templates, dim)).astype(np.float32)
    target = rng.integers(classes, size=n)
    images[np.arange(n)] += 2 * prompts[target * templates]  # make it better than chance

    class Data(torch.utils.data.Dataset):
        classes = [f"c{i}" for i in range(7)]

        def __len__(self):
            return n

        def __getitem__(self, i):
            return i, int(target[i])

    prompt_index = {f"{t}|c{c}": c * templates + t for c in range(classes) for t in range(templates)}
    model = _Embeddings(images, prompts)
    tokenizer = lambda texts: torch.tensor([prompt_index[t] for t in texts])  # noqa: E731
    theirs = zsc.evaluate(
        model,
        torch.utils.data.DataLoader(Data(), batch_size=16),
        tokenizer,
        Data.classes,
        [f"{t}|{{c}}" for t in range(templates)],
        "cpu",
        amp=False,
    )
    ours = classification_metrics(images, class_embeddings(prompts.reshape(classes, templates, dim)), target)
    for key in ("acc1", "acc5", "mean_per_class_recall"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-9), key

    captions = rng.normal(size=(2 * n, dim)).astype(np.float32)
    owner = np.repeat(np.arange(n), 2)
    captions += 0.6 * images[owner]  # related, not identical: recall strictly between 0 and 1

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            return i, [2 * i, 2 * i + 1]

    collate = lambda batch: (torch.tensor([b[0] for b in batch]), [b[1] for b in batch])  # noqa: E731
    theirs = zsr.evaluate(
        _Embeddings(images, captions),
        torch.utils.data.DataLoader(Pairs(), batch_size=16, collate_fn=collate),
        lambda ids: torch.tensor(ids),
        "cpu",
        amp=False,
        recall_k_list=[1, 5, 10],
    )
    ours = retrieval_metrics(images, captions, owner)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key  # theirs averages in float32
    assert 0 < ours["text_retrieval_recall@1"] < 1


def test_normalize_leaves_zero_rows_finite():
    assert np.isfinite(normalize(np.zeros((2, 3)))).all()
