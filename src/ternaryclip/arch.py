"""CLIP architecture as data, shared by the torch side (export, ``to_torch``) and the torch-free runtime.

Two families are described, both a ViT image tower beside a text transformer:

- the OpenAI / open_clip ``CLIP`` (class token, causal text tower pooled at its end token): every
  ViT-* config of open_clip, and Hugging Face ``CLIPModel``, whose weights map onto it one to one;
- SigLIP / SigLIP 2 (open_clip's ``ViT-*-SigLIP*`` with their timm image tower, Hugging Face
  ``SiglipModel``): no class token, a biased patch embedding, an attention-pool ("map") head of its
  own probe, attention, LayerNorm and MLP, a non-causal text tower pooled at its last token with a
  biased projection, GELU-tanh in the towers whose config says so, and a learned ``logit_bias``.

The field names follow open_clip's ``CLIPVisionCfg`` / ``CLIPTextCfg`` so that
:meth:`ClipArch.to_open_clip_cfg` rebuilds a CLIP with ``open_clip.CLIP(**cfg)``.  Tensors use open_clip
CLIP's names; the SigLIP head's are ``visual.attn_pool.{probe, attn.*, ln.*, mlp.*}``.

Over 350 lines on purpose: both families' dataclasses, their round trip through a file's metadata and
their checks stay in the one module the torch side and the runtime share.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

# Sane bounds for metadata read from a file: far above any CLIP, far below sizes whose buffers would
# exhaust memory or whose products overflow a C++ size.
MAX_WIDTH = 1 << 16
MAX_LAYERS = 1024
MAX_IMAGE_SIZE = 4096
MAX_CONTEXT = 4096
MAX_VOCAB = 1 << 22
VISION_POOLS = ("tok", "avg", "map")
ACTIVATIONS = ("", "gelu", "gelu_tanh", "quick_gelu")  # "": the model-wide quick_gelu flag decides
TEXT_POOLS = ("argmax", "eos", "first", "last")
# Parameters the runtime may hold packed (matrices it multiplies by); every other one must be float.
_TERNARY_OK = (
    "visual.conv1.weight",
    "visual.proj",
    "visual.attn_pool.attn.in_proj_weight",
    "text_projection",
    "token_embedding.weight",
    "attn.in_proj_weight",
    "attn.out_proj.weight",
    "mlp.c_fc.weight",
    "mlp.c_proj.weight",
)


# Fields added for SigLIP (written to a file only when they differ from their CLIP default).
_SIGLIP_FIELDS = ("class_token", "patch_bias", "proj", "activation", "proj_bias")


@dataclass(frozen=True)
class VisionArch:
    image_size: int
    patch_size: int
    width: int
    layers: int
    heads: int
    mlp_width: int
    pool_type: str = "tok"  # tok (class token) | avg | map (attention pool: probe, attention, LayerNorm, MLP)
    final_ln_after_pool: bool = False
    no_ln_pre: bool = False
    class_token: bool = True
    patch_bias: bool = False  # the patch embedding has a bias (timm / SigLIP)
    proj: bool = True  # a visual.proj after the pool; without it the pooled width is embed_dim
    activation: str = ""  # gelu | gelu_tanh | quick_gelu; "" follows ClipArch.quick_gelu


@dataclass(frozen=True)
class TextArch:
    context_length: int
    vocab_size: int
    width: int
    heads: int
    layers: int
    mlp_width: int
    pool_type: str = "argmax"  # argmax (EOT = highest id) | eos (first eos_id) | first | last
    eos_id: int = 2
    causal: bool = True
    proj_bias: bool = False  # text_projection_bias after the projection (SigLIP)
    activation: str = ""  # as VisionArch.activation


@dataclass(frozen=True)
class ClipArch:
    embed_dim: int
    vision: VisionArch
    text: TextArch
    quick_gelu: bool = False
    norm_eps: float = 1e-5
    logit_bias: bool = False

    def to_dict(self) -> dict:
        """As metadata; the SigLIP fields only where they differ from CLIP's, so that a CLIP's file
        reads the same as before they existed (and in a ternaryclip that predates them)."""
        d = asdict(self)
        for section, klass in (("vision", VisionArch), ("text", TextArch)):
            for f in fields(klass):
                if f.name in _SIGLIP_FIELDS and d[section][f.name] == f.default:
                    del d[section][f.name]
        return d

    def activation(self, tower: VisionArch | TextArch) -> str:
        """The MLP activation of one tower: its own, else the model-wide quick_gelu flag's."""
        return tower.activation or ("quick_gelu" if self.quick_gelu else "gelu")

    @property
    def is_siglip(self) -> bool:
        """A SigLIP-style model: sigmoid pair logits (``logit_bias``) rather than CLIP's softmax."""
        return self.logit_bias

    @classmethod
    def from_dict(cls, d: dict) -> ClipArch:
        """Parse and check metadata; a ValueError names the missing, unexpected or out-of-range key.

        Everything a file declares is checked here, before the runtime sizes a buffer or calls a
        kernel with it: types, enums, bounds, heads dividing widths, a positive finite eps.
        """
        if not isinstance(d, dict) or not isinstance(d.get("vision"), dict) or not isinstance(d.get("text"), dict):
            raise ValueError("invalid architecture metadata: arch, arch.vision and arch.text must be objects")
        try:
            _check_keys("arch", cls, d)
            _check_keys("arch.vision", VisionArch, d["vision"])
            _check_keys("arch.text", TextArch, d["text"])
            arch = cls(**{**d, "vision": VisionArch(**d["vision"]), "text": TextArch(**d["text"])})
        except TypeError as err:
            raise ValueError(f"invalid architecture metadata: {err}") from None
        arch.validate()
        return arch

    def validate(self) -> None:
        """Raise ValueError unless every field is of its type and within sane bounds."""
        v, t = self.vision, self.text
        for section, obj in (("arch", self), ("arch.vision", v), ("arch.text", t)):
            _check_types(section, obj)
        for name, value, top in (
            ("embed_dim", self.embed_dim, MAX_WIDTH),
            ("vision.width", v.width, MAX_WIDTH),
            ("vision.mlp_width", v.mlp_width, MAX_WIDTH),
            ("vision.layers", v.layers, MAX_LAYERS),
            ("vision.image_size", v.image_size, MAX_IMAGE_SIZE),
            ("vision.patch_size", v.patch_size, v.image_size),
            ("text.width", t.width, MAX_WIDTH),
            ("text.mlp_width", t.mlp_width, MAX_WIDTH),
            ("text.layers", t.layers, MAX_LAYERS),
            ("text.context_length", t.context_length, MAX_CONTEXT),
            ("text.vocab_size", t.vocab_size, MAX_VOCAB),
        ):
            if not 1 <= value <= top:
                raise ValueError(f"arch.{name} = {value} is outside [1, {top}]")
        for name, width, heads in (("vision", v.width, v.heads), ("text", t.width, t.heads)):
            if not 1 <= heads <= width or width % heads:
                raise ValueError(f"arch.{name}.heads = {heads} does not divide arch.{name}.width = {width}")
        if v.image_size % v.patch_size:
            raise ValueError(f"arch.vision.patch_size {v.patch_size} does not divide image_size {v.image_size}")
        if v.pool_type not in VISION_POOLS or t.pool_type not in TEXT_POOLS:
            raise ValueError(
                f"unknown pool_type (vision {v.pool_type!r}: one of {VISION_POOLS}; text {t.pool_type!r}: "
                f"one of {TEXT_POOLS})"
            )
        if v.activation not in ACTIVATIONS or t.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation (vision {v.activation!r}, text {t.activation!r}): one of {ACTIVATIONS[1:]}"
            )
        if v.pool_type == "tok" and not v.class_token:
            raise ValueError("arch.vision.pool_type 'tok' needs a class token (arch.vision.class_token)")
        if not v.proj and v.width != self.embed_dim:
            raise ValueError(
                f"arch.vision.proj is false, so embed_dim {self.embed_dim} must equal vision.width {v.width}"
            )
        if not 0 <= t.eos_id < t.vocab_size:
            raise ValueError(f"arch.text.eos_id = {t.eos_id} is not a token id below vocab_size {t.vocab_size}")
        if not (math.isfinite(self.norm_eps) and 0 < self.norm_eps < 1):
            raise ValueError(f"arch.norm_eps = {self.norm_eps} must be a finite number in (0, 1)")

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter the model needs, by open_clip name, with its torch shape."""
        v, t, e = self.vision, self.text, self.embed_dim
        grid = v.image_size // v.patch_size
        shapes = {
            "visual.positional_embedding": (grid * grid + int(v.class_token), v.width),
            "visual.conv1.weight": (v.width, 3, v.patch_size, v.patch_size),
            "visual.ln_post.weight": (v.width,),
            "visual.ln_post.bias": (v.width,),
            "token_embedding.weight": (t.vocab_size, t.width),
            "positional_embedding": (t.context_length, t.width),
            "ln_final.weight": (t.width,),
            "ln_final.bias": (t.width,),
            "text_projection": (t.width, e),
        }
        if v.class_token:
            shapes["visual.class_embedding"] = (v.width,)
        if v.patch_bias:
            shapes["visual.conv1.bias"] = (v.width,)
        if v.proj:
            shapes["visual.proj"] = (v.width, e)
        if t.proj_bias:
            shapes["text_projection_bias"] = (e,)
        if not v.no_ln_pre:
            shapes.update({"visual.ln_pre.weight": (v.width,), "visual.ln_pre.bias": (v.width,)})
        if v.pool_type == "map":
            head = _block_shapes("visual.attn_pool", v.width, v.mlp_width)
            shapes["visual.attn_pool.probe"] = (1, 1, v.width)
            shapes.update({k.replace(".ln_2.", ".ln."): s for k, s in head.items() if ".ln_1." not in k})
        for i in range(v.layers):
            shapes.update(_block_shapes(f"visual.transformer.resblocks.{i}", v.width, v.mlp_width))
        for i in range(t.layers):
            shapes.update(_block_shapes(f"transformer.resblocks.{i}", t.width, t.mlp_width))
        return shapes

    def check_tensors(self, shapes: dict[str, tuple[int, ...]], ternary: set[str]) -> None:
        """Raise ValueError unless ``shapes`` (torch shapes by name) are exactly what this architecture uses.

        ``ternary`` names the packed tensors: only matrices the runtime multiplies by may be packed.
        ``logit_scale`` / ``logit_bias`` are optional (the runtime does not use them).
        """
        expected = self.tensor_shapes()
        missing = sorted(set(expected) - set(shapes))
        extra = sorted(set(shapes) - set(expected) - {"logit_scale", "logit_bias"})
        if missing or extra:
            raise ValueError(
                f"the tensors do not match the architecture: {len(missing)} missing {missing[:3]}, "
                f"{len(extra)} unexpected {extra[:3]} (do arch.*.layers / no_ln_pre match the file?)"
            )
        for name, shape in expected.items():
            if tuple(shapes[name]) != shape:
                raise ValueError(
                    f"tensor {name!r} has shape {list(shapes[name])}, the architecture needs {list(shape)}"
                )
        for name in sorted(ternary):
            if not name.endswith(_TERNARY_OK):
                raise ValueError(f"tensor {name!r} is stored ternary, but the runtime needs it float")

    def to_open_clip_cfg(self) -> dict:
        """Keyword arguments for ``open_clip.CLIP`` (the CLIP family only)."""
        v, t = self.vision, self.text
        if v.pool_type == "map" or not v.class_token or v.patch_bias or not v.proj or t.proj_bias:
            raise ValueError(
                "a SigLIP architecture has no open_clip.CLIP config; rebuild it with its own open_clip name"
            )
        cfg = {
            "embed_dim": self.embed_dim,
            "quick_gelu": self.quick_gelu,
            "vision_cfg": {
                "image_size": v.image_size,
                "patch_size": v.patch_size,
                "width": v.width,
                "layers": v.layers,
                "head_width": v.width // v.heads,
                "mlp_ratio": v.mlp_width / v.width,
                "pool_type": v.pool_type,
                "final_ln_after_pool": v.final_ln_after_pool,
                "no_ln_pre": v.no_ln_pre,
            },
            "text_cfg": {
                "context_length": t.context_length,
                "vocab_size": t.vocab_size,
                "width": t.width,
                "heads": t.heads,
                "layers": t.layers,
                "mlp_ratio": t.mlp_width / t.width,
                "pool_type": t.pool_type,
                "eos_id": t.eos_id,
                "no_causal_mask": not t.causal,
            },
        }
        if self.norm_eps != 1e-5:
            cfg["vision_cfg"]["norm_kwargs"] = cfg["text_cfg"]["norm_kwargs"] = {"eps": self.norm_eps}
        if self.logit_bias:
            cfg["init_logit_bias"] = 0.0
        return cfg


def _block_shapes(prefix: str, width: int, mlp: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.ln_1.weight": (width,),
        f"{prefix}.ln_1.bias": (width,),
        f"{prefix}.attn.in_proj_weight": (3 * width, width),
        f"{prefix}.attn.in_proj_bias": (3 * width,),
        f"{prefix}.attn.out_proj.weight": (width, width),
        f"{prefix}.attn.out_proj.bias": (width,),
        f"{prefix}.ln_2.weight": (width,),
        f"{prefix}.ln_2.bias": (width,),
        f"{prefix}.mlp.c_fc.weight": (mlp, width),
        f"{prefix}.mlp.c_fc.bias": (mlp,),
        f"{prefix}.mlp.c_proj.weight": (width, mlp),
        f"{prefix}.mlp.c_proj.bias": (width,),
    }


def _check_keys(section: str, klass: type, values: dict) -> None:
    unknown = set(values) - {f.name for f in fields(klass)}
    if unknown:
        raise ValueError(f"unknown keys in {section}: {sorted(unknown)}")


_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _check_types(section: str, obj) -> None:
    for f in fields(obj):
        value, allowed = getattr(obj, f.name), _TYPES.get(f.type)
        if allowed is None:
            continue  # a nested section, checked on its own
        if not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool)):
            raise ValueError(f"{section}.{f.name} = {value!r} is not of type {f.type}")


def tower_of(name: str) -> str:
    """``vision``, ``text`` or ``other`` (logit scale/bias) for a CLIP parameter name, open_clip or HF."""
    if name.startswith(("visual.", "vision_model.", "visual_projection.")):
        return "vision"
    if name.startswith("logit_"):
        return "other"
    return "text"


INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos")
RESIZE_MODES = ("shortest", "squash")


@dataclass(frozen=True)
class PreprocessSpec:
    """The preprocessing a ``.tclip`` declares, checked as data (``runtime.Preprocess`` subclasses it to make pixels).

    It lives here, beside the architecture, so that the file reader can check it without the runtime.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    @classmethod
    def from_meta(cls, meta: dict) -> PreprocessSpec:
        """ValueError names the field that is missing or out of range."""
        if not isinstance(meta, dict):
            raise ValueError("preprocess metadata is missing or not an object")
        size = meta.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_IMAGE_SIZE:
            raise ValueError(f"preprocess.size = {size!r} is not an integer in [1, {MAX_IMAGE_SIZE}]")
        mean, std = _three_floats("mean", meta.get("mean")), _three_floats("std", meta.get("std"))
        if min(std) <= 0:
            raise ValueError(f"preprocess.std = {list(std)} must be positive")
        spec = cls(size, mean, std, meta.get("interpolation", "bicubic"), meta.get("resize_mode", "shortest"))
        if spec.interpolation not in INTERPOLATIONS or spec.resize_mode not in RESIZE_MODES:
            raise ValueError(
                f"unsupported preprocessing {spec.interpolation!r}/{spec.resize_mode!r}: interpolation one of "
                f"{sorted(INTERPOLATIONS)}, resize_mode one of {list(RESIZE_MODES)}"
            )
        return spec


def _three_floats(name: str, value) -> tuple[float, float, float]:
    ok = isinstance(value, (list, tuple)) and len(value) == 3
    if not ok or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise ValueError(f"preprocess.{name} = {value!r} is not three finite numbers")
    return tuple(float(v) for v in value)
