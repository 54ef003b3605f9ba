"""CLIP architecture as data, shared by the torch side (export, ``to_torch``) and the torch-free runtime.

One family is described: the OpenAI / open_clip ``CLIP`` with a ViT image tower and a causal text
transformer (every ViT-* config of open_clip, and Hugging Face ``CLIPModel``, whose weights map onto
it one to one).  The field names follow open_clip's ``CLIPVisionCfg`` / ``CLIPTextCfg`` so that
:meth:`ClipArch.to_open_clip_cfg` rebuilds the model with ``open_clip.CLIP(**cfg)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class VisionArch:
    image_size: int
    patch_size: int
    width: int
    layers: int
    heads: int
    mlp_width: int
    pool_type: str = "tok"  # tok (class token) | avg
    final_ln_after_pool: bool = False
    no_ln_pre: bool = False


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


@dataclass(frozen=True)
class ClipArch:
    embed_dim: int
    vision: VisionArch
    text: TextArch
    quick_gelu: bool = False
    norm_eps: float = 1e-5
    logit_bias: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClipArch:
        """Parse metadata; a ValueError names the missing or unexpected key."""
        try:
            known = {f.name for f in fields(cls)}
            unknown = set(d) - known
            if unknown:
                raise ValueError(f"unknown architecture keys {sorted(unknown)}")
            return cls(**{**d, "vision": VisionArch(**d["vision"]), "text": TextArch(**d["text"])})
        except (TypeError, KeyError) as err:
            raise ValueError(f"invalid architecture metadata: {err}") from None

    def to_open_clip_cfg(self) -> dict:
        """Keyword arguments for ``open_clip.CLIP``."""
        v, t = self.vision, self.text
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


def tower_of(name: str) -> str:
    """``vision``, ``text`` or ``other`` (logit scale/bias) for a CLIP parameter name, open_clip or HF."""
    if name.startswith(("visual.", "vision_model.", "visual_projection.")):
        return "vision"
    if name.startswith("logit_"):
        return "other"
    return "text"
