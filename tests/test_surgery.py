"""`ternarize_` on open_clip and Hugging Face CLIP: which weights change, forward equality, training."""

import copy

import pytest
import torch

from helpers import TINY_OPEN_CLIP, random_inputs
from ternaryclip.quant import TernaryConfig, materialize_, select_sites, ternarize_, ternary_sites
from ternaryclip.torch_clip import clip_family


def manual_absmean(w: torch.Tensor, out_axis: int = 0) -> torch.Tensor:
    """Per-output-channel absmean written out independently of the library."""
    m = w.detach().t() if out_axis == 1 else w.detach().reshape(w.shape[0], -1)
    s = m.abs().mean(dim=1, keepdim=True)
    q = torch.clamp(torch.round(m / s), -1, 1) * s
    return q.t() if out_axis == 1 else q.reshape(w.shape)


def manual_ternary_copy(model, names_axes):
    """A float copy of ``model`` whose named weights are replaced by their hand-computed ternary values."""
    ref = copy.deepcopy(model)
    params = dict(ref.named_parameters())
    with torch.no_grad():
        for name, axis in names_axes.items():
            params[name].copy_(manual_absmean(params[name], axis))
    return ref


OPEN_CLIP_PROJECTIONS = {"visual.proj": 1, "text_projection": 1}


def open_clip_counts(layers_v=2, layers_t=2):
    per_block = 4  # in_proj, out_proj, c_fc, c_proj
    return {"all": 1 + per_block * layers_v + 1 + per_block * layers_t + 1, "ffn": 2 * (layers_v + layers_t)}


@pytest.mark.parametrize("scope", ["all", "ffn"])
def test_open_clip_scope_selects_the_expected_weights(tiny_open_clip, scope):
    names = [s.name for s in select_sites(tiny_open_clip, TernaryConfig(scope=scope))]
    assert len(names) == open_clip_counts()[scope]
    if scope == "all":
        for expected in [
            "visual.conv1.weight",
            "visual.proj",
            "text_projection",
            "visual.transformer.resblocks.0.attn.in_proj_weight",
            "transformer.resblocks.1.attn.out_proj.weight",
            "transformer.resblocks.1.mlp.c_fc.weight",
        ]:
            assert expected in names
        assert "token_embedding.weight" not in names
    else:
        assert all(".mlp.c_fc." in n or ".mlp.c_proj." in n for n in names)


def test_embedding_flag_adds_the_token_embedding_only(tiny_open_clip):
    names = [s.name for s in select_sites(tiny_open_clip, TernaryConfig(scope="all", embedding=True))]
    assert len(names) == open_clip_counts()["all"] + 1
    assert "token_embedding.weight" in names and "positional_embedding" not in names


def test_regex_scope_and_filter_fn(tiny_open_clip):
    visual = select_sites(tiny_open_clip, TernaryConfig(scope=r"^visual\."))
    assert len(visual) == 1 + 4 * 2 + 1
    attn_only = select_sites(tiny_open_clip, TernaryConfig(), filter_fn=lambda m, n: ".attn." in n)
    assert len(attn_only) == 2 * 4


def test_open_clip_forward_equals_hand_ternarized_copy(tiny_open_clip):
    names = {s.name: s.out_axis for s in select_sites(tiny_open_clip, TernaryConfig(embedding=True))}
    reference = manual_ternary_copy(tiny_open_clip, names)
    ternarize_(tiny_open_clip, TernaryConfig(embedding=True))
    image, text = random_inputs()
    with torch.no_grad():
        assert torch.allclose(tiny_open_clip.encode_image(image), reference.encode_image(image), atol=1e-5)
        assert torch.allclose(tiny_open_clip.encode_text(text), reference.encode_text(text), atol=1e-5)


def test_ternary_forward_differs_from_float(tiny_open_clip):
    image, _ = random_inputs()
    with torch.no_grad():
        before = tiny_open_clip.encode_image(image)
        ternarize_(tiny_open_clip, TernaryConfig())
        after = tiny_open_clip.encode_image(image)
    assert not torch.allclose(before, after, atol=1e-3)


def test_gradients_reach_every_latent_weight(tiny_open_clip):
    ternarize_(tiny_open_clip.train(), TernaryConfig(embedding=True))
    image, text = random_inputs()
    loss = tiny_open_clip.encode_image(image).pow(2).sum() + tiny_open_clip.encode_text(text).pow(2).sum()
    loss.backward()
    sites = list(ternary_sites(tiny_open_clip))
    assert len(sites) == open_clip_counts()["all"] + 1
    for name, module, param_name, _ in sites:
        latent = module.parametrizations[param_name].original
        assert latent.requires_grad and latent.grad is not None and latent.grad.abs().sum() > 0, name


def test_one_optimizer_step_changes_latent_weights(tiny_open_clip):
    ternarize_(tiny_open_clip.train(), TernaryConfig())
    latent = tiny_open_clip.visual.transformer.resblocks[0].mlp.c_fc.parametrizations.weight.original
    before = latent.detach().clone()
    opt = torch.optim.SGD(tiny_open_clip.parameters(), lr=0.1)
    image, _ = random_inputs()
    tiny_open_clip.encode_image(image).sum().backward()
    opt.step()
    assert not torch.equal(before, latent.detach())


def test_materialize_leaves_plain_ternary_weights(tiny_open_clip):
    ternarize_(tiny_open_clip, TernaryConfig(rule="twn", embedding=True))
    image, text = random_inputs()
    with torch.no_grad():
        expected = tiny_open_clip.encode_text(text)
    materialize_(tiny_open_clip)
    assert not list(ternary_sites(tiny_open_clip))
    with torch.no_grad():
        assert torch.allclose(tiny_open_clip.encode_text(text), expected, atol=1e-6)
    for row in tiny_open_clip.transformer.resblocks[0].attn.in_proj_weight:
        assert len(torch.unique(row)) <= 3
    for col in tiny_open_clip.text_projection.t():
        assert len(torch.unique(col)) <= 3


def test_open_clip_from_local_checkpoint(tiny_config_path, tmp_path):
    import open_clip

    from ternaryclip.torch_clip import create_open_clip

    torch.manual_seed(3)
    source = open_clip.CLIP(**TINY_OPEN_CLIP)
    ckpt = tmp_path / "tiny.pt"
    torch.save({"state_dict": source.state_dict()}, ckpt)
    model = create_open_clip(str(tiny_config_path), str(ckpt))
    assert torch.equal(model.visual.conv1.weight, source.visual.conv1.weight)
    ternarize_(model, TernaryConfig(scope="ffn"))
    image, _ = random_inputs()
    with torch.no_grad():
        assert model.encode_image(image).shape == (3, TINY_OPEN_CLIP["embed_dim"])


HF_PROJECTIONS = 2  # visual_projection, text_projection (nn.Linear without bias)


def test_hf_clip_scope_counts(tiny_hf_clip):
    assert clip_family(tiny_hf_clip) == "hf"
    all_sites = select_sites(tiny_hf_clip, TernaryConfig(scope="all"))
    per_layer = 6  # q, k, v, out_proj, fc1, fc2
    assert len(all_sites) == 1 + 2 * per_layer * 2 + HF_PROJECTIONS
    assert "vision_model.embeddings.patch_embedding.weight" in [s.name for s in all_sites]
    assert len(select_sites(tiny_hf_clip, TernaryConfig(scope="ffn"))) == 2 * 2 * 2
    with_embedding = select_sites(tiny_hf_clip, TernaryConfig(embedding=True))
    extra = {s.name for s in with_embedding} - {s.name for s in all_sites}
    assert extra == {"text_model.embeddings.token_embedding.weight"}


def _hf_features(model, image, text):
    with torch.no_grad():
        img = model.get_image_features(pixel_values=image)
        txt = model.get_text_features(input_ids=text)
    # transformers 5 returns a ModelOutput; 4.x returns the tensor
    return [getattr(t, "pooler_output", t) for t in (img, txt)]


def test_hf_clip_forward_equals_hand_ternarized_copy(tiny_hf_clip):
    names = {s.name: s.out_axis for s in select_sites(tiny_hf_clip, TernaryConfig(embedding=True))}
    reference = manual_ternary_copy(tiny_hf_clip, names)
    ternarize_(tiny_hf_clip, TernaryConfig(embedding=True))
    image, text = random_inputs()
    for got, want in zip(_hf_features(tiny_hf_clip, image, text), _hf_features(reference, image, text)):
        assert torch.allclose(got, want, atol=1e-5)


def test_hf_clip_from_pretrained_local_dir_trains(tiny_hf_clip, tmp_path):
    from transformers import CLIPModel

    tiny_hf_clip.save_pretrained(tmp_path / "hf")
    model = CLIPModel.from_pretrained(tmp_path / "hf")
    ternarize_(model.train(), TernaryConfig(scope="all", rule="absmean2", granularity="group", group_size=16))
    image, text = random_inputs()
    out = model(pixel_values=image, input_ids=text, return_loss=True)
    out.loss.backward()
    q = model.vision_model.encoder.layers[0].self_attn.q_proj.parametrizations.weight.original
    assert q.grad is not None and q.grad.abs().sum() > 0


def test_not_a_clip_is_refused():
    with pytest.raises(ValueError, match="not a CLIP"):
        ternarize_(torch.nn.Sequential(torch.nn.Linear(2, 2)), TernaryConfig())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rule": "ternary"}, "unknown rule"),
        ({"granularity": "rows"}, "unknown granularity"),
        ({"scope": "mlp("}, "neither one of all, ffn"),
        ({"group_size": -1}, "group_size"),
    ],
)
def test_bad_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TernaryConfig(**kwargs)


def test_scope_or_filter_that_matches_nothing_is_refused(tiny_open_clip):
    with pytest.raises(ValueError, match="matches no weight"):
        ternarize_(tiny_open_clip, TernaryConfig(scope="no_such_layer"))
    with pytest.raises(ValueError, match="matches no weight"):
        ternarize_(tiny_open_clip, TernaryConfig(), filter_fn=lambda m, n: False)


def test_ternarizing_twice_is_refused(tiny_open_clip):
    ternarize_(tiny_open_clip, TernaryConfig(scope="ffn"))
    with pytest.raises(ValueError, match="already"):
        ternarize_(tiny_open_clip, TernaryConfig(scope="ffn"))


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["ViT-B-32", "ViT-B-16"])
def test_real_architecture_is_fully_ternarized(arch):
    import open_clip

    from ternaryclip.quant import ternary_stats

    model = open_clip.create_model(arch).eval()
    ternarize_(model, TernaryConfig(scope="all", embedding=True))
    assert len(list(ternary_sites(model))) == 1 + 12 * 4 + 1 + 12 * 4 + 1 + 1
    stats = ternary_stats(model, packing="ideal")
    assert stats["ternary_fraction"] >= 0.99
    assert 16.0 <= stats["compression_vs_fp32"] <= 20.0
    with torch.no_grad():
        assert model.encode_text(torch.randint(0, 49408, (1, 77))).shape == (1, 512)


def test_ternary_can_be_switched_off_for_a_float_warm_up(tiny_open_clip):
    from ternaryclip.quant import set_ternary_enabled

    image, _ = random_inputs()
    with torch.no_grad():
        float_out = tiny_open_clip.encode_image(image)
        ternarize_(tiny_open_clip, TernaryConfig())
        ternary_out = tiny_open_clip.encode_image(image)
        set_ternary_enabled(tiny_open_clip, False)
        assert torch.allclose(tiny_open_clip.encode_image(image), float_out, atol=1e-6)
        set_ternary_enabled(tiny_open_clip, True)
        assert torch.allclose(tiny_open_clip.encode_image(image), ternary_out, atol=1e-6)
