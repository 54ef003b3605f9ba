"""SigLIP students: ternarize_ reaches every SigLIP matrix, distill trains with the sigmoid pair loss."""

from __future__ import annotations

import numpy as np
import pytest

from siglip_support import (
    TINY_SIGLIP,
    tiny_hf_siglip,
    tiny_open_clip_siglip,
    write_tiny_siglip_config,
    write_tiny_tokenizer,
)
from ternaryclip.distill import DistillConfig, DistillLoss, LossWeights, Trainer
from ternaryclip.distill.losses import SigLipLoss, SigmoidLogitDistillLoss
from ternaryclip.quant import TernaryConfig, select_sites, ternarize_, ternary_stats

torch = pytest.importorskip("torch")
F = torch.nn.functional


def test_ternarize_reaches_every_siglip_matrix():
    model = tiny_open_clip_siglip()
    names = {s.name for s in select_sites(model, TernaryConfig(scope="all", embedding=True))}
    for expected in (
        "visual.trunk.patch_embed.proj.weight",
        "visual.trunk.attn_pool.q.weight",
        "visual.trunk.attn_pool.kv.weight",
        "visual.trunk.attn_pool.proj.weight",
        "visual.trunk.attn_pool.mlp.fc1.weight",
        "visual.trunk.attn_pool.mlp.fc2.weight",
        "visual.trunk.blocks.1.attn.qkv.weight",
        "text.text_projection.weight",
        "text.token_embedding.weight",
        "text.transformer.resblocks.1.attn.in_proj_weight",
    ):
        assert expected in names, expected
    ternarize_(model, TernaryConfig(scope="all", embedding=True))
    float_matrices = [r["name"] for r in ternary_stats(model)["modules"] if len(r["shape"]) >= 2 and not r["ternary"]]
    assert sorted(float_matrices) == [
        "text.positional_embedding",
        "visual.trunk.attn_pool.latent",
        "visual.trunk.pos_embed",
    ]


def test_hf_siglip_head_is_ternarized():
    names = {s.name for s in select_sites(tiny_hf_siglip(), TernaryConfig(scope="all"))}
    assert {"vision_model.head.attention.in_proj_weight", "vision_model.head.mlp.fc1.weight"} <= names
    assert {"text_model.head.weight", "vision_model.embeddings.patch_embedding.weight"} <= names


def test_sigmoid_loss_equals_open_clip():
    from open_clip.loss import SigLipLoss as OpenClipSigLipLoss

    torch.manual_seed(0)
    image, text = F.normalize(torch.randn(10, 16), dim=-1), F.normalize(torch.randn(10, 16), dim=-1)
    scale, bias = torch.tensor(10.0), torch.tensor(-10.0)
    ours = SigLipLoss()(image, text, scale, bias)
    assert torch.allclose(ours, OpenClipSigLipLoss()(image, text, scale, bias), atol=1e-5)


def test_sigmoid_logit_distillation_is_the_pairwise_bernoulli_kl():
    torch.manual_seed(0)
    s, t = torch.randn(4, 4), torch.randn(4, 4)
    p, q = torch.sigmoid(t / 2), torch.sigmoid(s / 2)
    by_hand = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean() * 4
    assert torch.allclose(SigmoidLogitDistillLoss(temperature=2.0)(s, t), by_hand, atol=1e-6)
    reverse = (q * (q / p).log() + (1 - q) * ((1 - q) / (1 - p)).log()).mean() * 4
    assert torch.allclose(SigmoidLogitDistillLoss(temperature=2.0, reverse=True)(s, t), reverse, atol=1e-6)
    assert float(SigmoidLogitDistillLoss()(s, s)) == pytest.approx(0.0, abs=1e-7)


def test_a_student_with_logit_bias_trains_with_sigmoid_terms():
    torch.manual_seed(0)
    image, text = torch.randn(6, 8), torch.randn(6, 8)
    t_image, t_text = torch.randn(6, 8), torch.randn(6, 8)
    scale, bias, t_bias = torch.tensor(10.0), torch.tensor(-5.0), torch.tensor(-3.0)
    loss = DistillLoss(LossWeights(contrastive=1.0, logit=1.0, feature=0.0))
    _, parts = loss(image, text, scale, t_image, t_text, scale, logit_bias=bias, teacher_logit_bias=t_bias)
    n = [F.normalize(x, dim=-1) for x in (image, text, t_image, t_text)]
    assert parts["contrastive"] == pytest.approx(float(SigLipLoss()(n[0], n[1], scale, bias)), rel=1e-5)
    expected_kd = SigmoidLogitDistillLoss()(scale * n[0] @ n[1].T + bias, scale * n[2] @ n[3].T + t_bias)
    assert parts["logit"] == pytest.approx(float(expected_kd), rel=1e-5)


@pytest.fixture
def siglip_teacher(tmp_path):
    from safetensors.torch import save_file

    config = write_tiny_siglip_config(tmp_path / "tiny-siglip.json", vocab_size=100, context=16)
    weights = tmp_path / "teacher.safetensors"
    model = tiny_open_clip_siglip(seed=1)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return config, str(weights), write_tiny_tokenizer(tmp_path / "tokenizer")


def test_distill_a_siglip_student_and_run_it(siglip_teacher, tmp_path):
    import ternaryclip

    config, weights, tokenizer = siglip_teacher
    trainer = Trainer(
        DistillConfig(
            teacher=config,
            teacher_pretrained=weights,
            tokenizer=tokenizer,
            data="synthetic",
            steps=30,
            batch_size=16,
            lr=2e-3,
            warmup=4,
            contrastive=0.5,
            out=str(tmp_path / "run"),
            save_every=100,
            progress=False,
            threads=1,
            workers=1,
        )
    )
    history = trainer.run()
    assert all(np.isfinite(h["loss"]) for h in history) and "logit" in history[0]
    early = np.mean([h["teacher_cosine"] for h in history[:5]])
    late = np.mean([h["teacher_cosine"] for h in history[-5:]])
    assert late > early, (early, late)
    assert trainer.student.logit_bias.grad is not None  # the bias learns
    path = trainer.export()
    runtime = ternaryclip.load(path, mode="exact", threads=1)
    assert runtime.data.meta["tokenizer"]["type"] == "hf_tokenizers"
    texts = ["two small red circles on a dark background", "a blue square"]
    ids = trainer.tokenizer(texts)
    assert np.array_equal(runtime.tokenize(texts), ids)
    trainer.student.eval()
    from ternaryclip.quant import materialize_

    with torch.no_grad():
        reference = materialize_(trainer.student).encode_text(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(runtime.encode_text(texts), reference, rtol=1e-3, atol=1e-4)


def test_tiny_config_is_the_siglip2_layout():
    assert TINY_SIGLIP["text_cfg"]["no_causal_mask"] and TINY_SIGLIP["vision_cfg"]["timm_pool"] == "map"
