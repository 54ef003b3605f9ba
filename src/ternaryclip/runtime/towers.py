"""The two towers of the torch-free forward pass, built from a ``.tclip``'s tensors by name.

:class:`VisionTower` is open_clip's ``VisionTransformer``: patch embedding, class token, blocks,
``ln_post`` and the pooled projection; or SigLIP's timm ViT: no class token, ``ln_post`` on every token
and the attention-pool head.  :class:`TextTower` is the text transformer: token and position
embeddings, blocks, ``ln_final`` at the pooled token and ``text_projection`` (biased in SigLIP).  Both work on one batch;
:class:`~ternaryclip.runtime.model.TernaryCLIP` batches, checks inputs and normalizes.
"""

from __future__ import annotations

import numpy as np

from ..arch import ClipArch
from ..pack.bits import unpack_2bit_unsigned
from ..pack.format import TclipModel, TernaryTensor, expand_scales
from .layers import AttentionPool, Block, Buffers, LayerNorm, Linear

# Projections are stored as torch's ``x @ P``, i.e. [K, N]: the transpose of a linear layer's weight.
_PROJECTIONS = ("visual.proj", "text_projection")


class Weights:
    """The file's tensors, handed out as runtime layers that share one set of scratch arrays."""

    def __init__(self, data: TclipModel, mode: str, buffers: Buffers):
        self.ternary = data.ternary
        self.floats = {k: np.asarray(v, dtype=np.float32) for k, v in data.floats.items()}
        self.mode, self.buffers = mode, buffers

    def linear(self, name: str, bias: str | None, role: str = "") -> Linear:
        """A linear layer; with a ``role`` its output goes to that shared scratch array, else a new array."""
        if name in self.ternary:
            weight = self.ternary[name]
        else:
            weight = self.floats[name].T if name in _PROJECTIONS else self.floats[name]
            weight = weight.reshape(weight.shape[0], -1)
        return Linear(weight, self.floats.get(bias) if bias else None, self.mode, self.buffers if role else None, role)

    def norm(self, prefix: str, eps: float) -> LayerNorm:
        return LayerNorm(self.floats[prefix + ".weight"], self.floats[prefix + ".bias"], eps, self.buffers)

    def rows(self, name: str, start: int) -> TernaryTensor | np.ndarray:
        """Rows ``start:`` of a ``[N, K]`` weight (or bias), packed or float, without a copy of the codes."""
        if name not in self.ternary:
            return self.floats[name][start:]
        w = self.ternary[name]
        scales = w.scales[start:] if w.scales.shape[0] > 1 else w.scales
        shape = (w.shape[0] - start, w.shape[1])
        return TernaryTensor(w.packed[start:], scales, shape, w.group_size, shape, 0, w.kind)

    def attention_pool(self, prefix: str, width: int, heads: int, activation: str, eps: float) -> AttentionPool:
        """SigLIP's head: the probe's query once, from the first ``width`` rows of the stacked q | k | v."""
        in_proj, bias = self.ternary.get(prefix + ".attn.in_proj_weight"), self.floats[prefix + ".attn.in_proj_bias"]
        weight = in_proj.dequantize() if in_proj is not None else self.floats[prefix + ".attn.in_proj_weight"]
        probe = self.floats[prefix + ".probe"].reshape(-1).astype(np.float64)
        query = probe @ weight[:width].T.astype(np.float64) + bias[:width]
        kv_weight = self.rows(prefix + ".attn.in_proj_weight", width)
        return AttentionPool(
            query=query.astype(np.float32),
            kv=Linear(kv_weight, bias[width:], self.mode, self.buffers, "qkv"),
            out_proj=self.linear(prefix + ".attn.out_proj.weight", prefix + ".attn.out_proj.bias"),
            ln=self.norm(prefix + ".ln", eps),
            c_fc=self.linear(prefix + ".mlp.c_fc.weight", prefix + ".mlp.c_fc.bias", "hidden"),
            c_proj=self.linear(prefix + ".mlp.c_proj.weight", prefix + ".mlp.c_proj.bias", "proj"),
            heads=heads,
            activation=activation,
        )

    def block(self, prefix: str, heads: int, activation: str, eps: float) -> Block:
        return Block(
            ln_1=self.norm(prefix + ".ln_1", eps),
            in_proj=self.linear(prefix + ".attn.in_proj_weight", prefix + ".attn.in_proj_bias", "qkv"),
            out_proj=self.linear(prefix + ".attn.out_proj.weight", prefix + ".attn.out_proj.bias", "proj"),
            ln_2=self.norm(prefix + ".ln_2", eps),
            c_fc=self.linear(prefix + ".mlp.c_fc.weight", prefix + ".mlp.c_fc.bias", "hidden"),
            c_proj=self.linear(prefix + ".mlp.c_proj.weight", prefix + ".mlp.c_proj.bias", "proj"),
            heads=heads,
            activation=activation,
            buffers=self.buffers,
            fast_attention=self.mode != "exact",  # bf16 attention products where the CPU has them
            int8_attention=self.mode == "fast",  # int8 ones in mode fast where the CPU has them
        )


class VisionTower:
    """Pixels ``[B, 3, H, W]`` -> image embeddings ``[B, embed_dim]`` (one batch)."""

    def __init__(self, arch: ClipArch, weights: Weights):
        v, eps, activation = arch.vision, arch.norm_eps, arch.activation(arch.vision)
        self.arch = v
        self.patch_embed = weights.linear("visual.conv1.weight", "visual.conv1.bias" if v.patch_bias else None, "patch")
        self.class_embedding = weights.floats["visual.class_embedding"] if v.class_token else None
        self.positional = weights.floats["visual.positional_embedding"]
        self.ln_pre = None if v.no_ln_pre else weights.norm("visual.ln_pre", eps)
        self.blocks = [
            weights.block(f"visual.transformer.resblocks.{i}", v.heads, activation, eps) for i in range(v.layers)
        ]
        self.ln_post = weights.norm("visual.ln_post", eps)
        self.attn_pool = None
        if v.pool_type == "map":
            self.attn_pool = weights.attention_pool("visual.attn_pool", v.width, v.heads, activation, eps)
        self.proj = weights.linear("visual.proj", None) if v.proj else None  # no role: a new array, returned
        # The pooled embedding reads the class token: the last block's projection and MLP run on that
        # row only (~6% of a forward pass; the same numbers).  False runs every row, for tests.
        self.pooled_rows_only = True

    def _tokens(self, pixels: np.ndarray) -> np.ndarray:
        """Patch embedding (a strided conv = a GEMM over flattened (channel, row, column) patches) + positions."""
        v = self.arch
        b, p = pixels.shape[0], v.patch_size
        grid = v.image_size // p
        patches = pixels.reshape(b, 3, grid, p, grid, p).transpose(0, 2, 4, 1, 3, 5).reshape(b * grid * grid, -1)
        tokens = self.patch_embed(np.ascontiguousarray(patches)).reshape(b, grid * grid, v.width)
        if self.class_embedding is not None:
            tokens = np.concatenate([np.broadcast_to(self.class_embedding, (b, 1, v.width)), tokens], axis=1)
        x = (tokens + self.positional).reshape(-1, v.width)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.ln_pre is not None:
            x = self.ln_pre(x).copy()  # the residual stream needs its own array, not the shared "ln" one
        return x

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        v, b = self.arch, pixels.shape[0]
        x = self._tokens(pixels)
        class_tokens = v.pool_type == "tok" and self.pooled_rows_only  # the last block's MLP for those only
        for block in self.blocks[:-1]:
            x = block(x, b, causal=False)
        x = self.blocks[-1](x, b, causal=False, rows=np.arange(b) * (x.shape[0] // b) if class_tokens else None)
        if class_tokens:
            return self._project(self.ln_post(x))
        if self.attn_pool is not None:  # LayerNorm every token, then the probe attends over them all
            return self._project(self.attn_pool(self.ln_post(x), b))
        x = x.reshape(b, -1, v.width)
        first = int(v.class_token)  # average the patch tokens only
        if v.pool_type == "tok":  # LayerNorm is per token: normalizing only the class token is the same
            pooled = self.ln_post(np.ascontiguousarray(x[:, 0]))
        elif v.final_ln_after_pool:  # average the patch tokens, then LayerNorm
            pooled = self.ln_post(np.ascontiguousarray(x[:, first:].mean(axis=1)))
        else:  # LayerNorm every token, then average the patch tokens
            pooled = self.ln_post(x.reshape(-1, v.width)).reshape(b, -1, v.width)[:, first:].mean(axis=1)
        return self._project(np.ascontiguousarray(pooled, dtype=np.float32))

    def _project(self, pooled: np.ndarray) -> np.ndarray:
        return self.proj(pooled) if self.proj is not None else np.array(pooled, dtype=np.float32)


class TextTower:
    """Token ids ``[B, T]`` -> text embeddings ``[B, embed_dim]`` (one batch)."""

    def __init__(self, arch: ClipArch, weights: Weights):
        t, eps, activation = arch.text, arch.norm_eps, arch.activation(arch.text)
        self.arch = t
        self.ternary_embedding = weights.ternary.get("token_embedding.weight")
        self.embedding = None if self.ternary_embedding is not None else weights.floats["token_embedding.weight"]
        self.positional = weights.floats["positional_embedding"]
        self.blocks = [weights.block(f"transformer.resblocks.{i}", t.heads, activation, eps) for i in range(t.layers)]
        self.ln_final = weights.norm("ln_final", eps)
        self.proj = weights.linear("text_projection", "text_projection_bias" if t.proj_bias else None)
        self.pooled_rows_only = True  # the last block's projection and MLP on the pooled tokens only

    def embed(self, ids: np.ndarray) -> np.ndarray:
        """Token embeddings; a ternary table is unpacked for the rows used only."""
        if self.ternary_embedding is None:
            return self.embedding[ids]
        emb = self.ternary_embedding
        flat = ids.reshape(-1)
        codes = unpack_2bit_unsigned(emb.packed[flat], emb.shape[1])[:, : emb.shape[1]].astype(np.float32) - 1.0
        rows = emb.scales[flat] if emb.scales.shape[0] > 1 else emb.scales  # per-row scales: only the rows used
        scales = expand_scales(rows, len(flat), emb.shape[1], emb.group_size)
        return (codes * scales).reshape(*ids.shape, emb.shape[1])

    def pool_index(self, ids: np.ndarray) -> np.ndarray:
        """The position each caption's embedding is read from (open_clip's ``text_global_pool``)."""
        t = self.arch
        if t.pool_type == "argmax":
            return ids.argmax(axis=1)
        if t.pool_type == "eos":
            return (ids == t.eos_id).argmax(axis=1)
        if t.pool_type == "first":
            return np.zeros(len(ids), dtype=np.int64)
        return np.full(len(ids), ids.shape[1] - 1)

    def lengths(self, ids: np.ndarray) -> np.ndarray:
        """Tokens each caption needs: with a causal mask nothing after the pooled token reaches it, so
        the tower stops there (open_clip always runs the whole context); non-causal towers need all."""
        if not self.arch.causal:
            return np.full(len(ids), ids.shape[1])
        return self.pool_index(ids) + 1

    def __call__(self, ids: np.ndarray, length: int | None = None) -> np.ndarray:
        """One batch through the tower, on its first ``length`` tokens (all when None)."""
        t = self.arch
        b = ids.shape[0]
        index = self.pool_index(ids)
        ids = ids[:, : length or ids.shape[1]]
        x = (self.embed(ids) + self.positional[: ids.shape[1]]).astype(np.float32).reshape(-1, t.width)
        rows = np.arange(b) * ids.shape[1] + index  # the pooled token of each caption
        for block in self.blocks[:-1]:
            x = block(x, b, causal=t.causal)
        if self.pooled_rows_only:  # the last block's MLP for the pooled tokens only
            return self.proj(self.ln_final(self.blocks[-1](x, b, causal=t.causal, rows=rows)))
        x = self.blocks[-1](x, b, causal=t.causal)
        return self.proj(np.ascontiguousarray(self.ln_final(x)[rows]))
