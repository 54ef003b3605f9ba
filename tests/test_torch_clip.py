"""load_float_clip: every spec a verb accepts gives the model it names, with the weights it holds."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import TINY_OPEN_CLIP, random_inputs
from ternaryclip.torch_clip import load_float_clip


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key].float(), sb[key].float()), key


def test_open_clip_config_and_checkpoint(tmp_path, tiny_open_clip):
    from safetensors.torch import save_file

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_OPEN_CLIP))
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_open_clip.state_dict().items()}, str(weights))
    loaded = load_float_clip(str(config), str(weights))
    _same_weights(loaded, tiny_open_clip)
    images, ids = random_inputs()
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(images), tiny_open_clip.encode_image(images))
        assert torch.equal(loaded.encode_text(ids), tiny_open_clip.encode_text(ids))


def test_a_hugging_face_folder_is_read_as_hugging_face(tmp_path, tiny_hf_clip):
    tiny_hf_clip.save_pretrained(tmp_path / "hf")
    loaded = load_float_clip(str(tmp_path / "hf"))
    assert type(loaded).__name__ == "CLIPModel" and not loaded.training
    _same_weights(loaded, tiny_hf_clip)
    with pytest.raises(ValueError, match="--pretrained goes with an open_clip model"):
        load_float_clip(str(tmp_path / "hf"), "weights.pt", family="hf")


def test_an_openai_state_dict_file_infers_its_architecture(tmp_path, tiny_open_clip):
    import open_clip

    cfg = dict(TINY_OPEN_CLIP, quick_gelu=True)
    cfg["vision_cfg"] = dict(cfg["vision_cfg"], head_width=64)  # OpenAI layout: 64-wide heads
    cfg["text_cfg"] = dict(cfg["text_cfg"], width=64, heads=1)
    torch.manual_seed(3)
    model = open_clip.CLIP(**cfg).eval()
    path = tmp_path / "openai.pt"
    torch.save(model.state_dict(), path)
    loaded = load_float_clip(str(path))  # a weights file alone: the OpenAI reading
    _same_weights(loaded, model)
    images, ids = random_inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_image(images), model.encode_image(images), rtol=0, atol=0)


def test_bundled_is_the_packaged_teacher():
    from ternaryclip.assets import TEACHER_CONFIG
    from ternaryclip.torch_clip import BUNDLED, bundled_teacher

    teacher = load_float_clip(BUNDLED)
    assert teacher.visual.image_size[0] == json.loads(TEACHER_CONFIG.read_text())["vision_cfg"]["image_size"]
    _same_weights(teacher, bundled_teacher())


def test_unknown_names_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown open_clip model 'ViT-Z-99'"):
        load_float_clip("ViT-Z-99")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_float_clip(str(tmp_path / "missing.json"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_float_clip(str(tmp_path / "nowhere" / "w.pt"), family="openai")
