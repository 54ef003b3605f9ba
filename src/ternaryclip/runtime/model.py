"""The torch-free CLIP forward pass over a ``.tclip`` file: numpy for glue, C++ kernels for the work.

Reads like open_clip's model: ``x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))`` for both towers, with
every ternary linear layer going through the ternary GEMM (``fast``: int8 activations, W1.58-A8;
``exact``: float activations, W1.58-A16; ``bf16``: activations rounded to bf16, W1.58-A16 on AMX-BF16)
and LayerNorm, GELU and attention in float32 kernels (the fast and bf16 modes' attention products in
bf16 where the CPU has AMX-BF16 or AVX512-BF16).
"""

from __future__ import annotations

import math
import mmap
import os
import threading
from dataclasses import dataclass

import numpy as np

from .. import kernels
from ..arch import ClipArch
from ..choices import MODES
from ..pack.bits import unpack_2bit_unsigned
from ..pack.format import TclipModel, TernaryTensor, check_model, expand_scales, read
from .checks import check_batch_size, check_finite_pixels, check_threads
from .preprocess import ImageError, Preprocess
from .tokenizer import ClipTokenizer


class Buffers:
    """Scratch arrays shared by all layers of a model, one per role and thread.

    Inside a block every intermediate (LayerNorm output, qkv, attention output, projection output,
    MLP hidden) is consumed before the next layer of the same role writes it, so all blocks share one
    array per role: allocating megabytes afresh for every layer cost page faults that stalled the
    worker threads, and one array per layer would cost memory.  A role keeps its largest array and
    hands out views of its start, so a server that sees every batch size from 1 to 32 holds one set
    of arrays, not 32.  Thread-local, so one model serves several Python threads.
    """

    MAX_VIEWS = 512  # remembered (role, shape) views per thread; a server sees many batch shapes

    def __init__(self):
        self._local = threading.local()

    def get(self, role: str, shape: tuple) -> np.ndarray:
        views = self._local.__dict__.setdefault("views", {})
        view = views.get((role, shape))  # a caption's forward asks ~70 times: no new view each time
        if view is not None:
            return view
        cache = self._local.__dict__.setdefault("arrays", {})
        size = math.prod(shape)
        if role not in cache or cache[role].size < size:
            cache[role] = aligned_empty(size)
            views.clear()  # views of the old, smaller array would keep it alive
        if len(views) >= self.MAX_VIEWS:
            views.clear()
        view = views[role, shape] = cache[role][:size].reshape(shape)
        return view


def aligned_empty(size: int, alignment: int = 64) -> np.ndarray:
    """float32 ``[size]`` that starts on a cache line: the kernels write large outputs a line at a time,
    bypassing the caches (kernels/amx.cpp), where the rows are aligned."""
    raw = np.empty(size + alignment // 4, dtype=np.float32)
    offset = (-raw.ctypes.data % alignment) // 4
    return raw[offset : offset + size]


class Linear:
    """``y = x W^T + b`` for a ternary (packed) or float weight stored as ``[N outputs, K inputs]``.

    With ``buffers`` and a ``role``, the output goes to the shared scratch array of that role (for
    outputs consumed at once); without, to a new array.
    """

    def __init__(
        self,
        weight: TernaryTensor | np.ndarray,
        bias: np.ndarray | None,
        mode: str,
        buffers: Buffers | None = None,
        role: str = "",
    ):
        self.weight, self.mode, self.buffers, self.role = weight, mode, buffers, role
        self.bias = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
        self.prepared = None
        self.fused = False  # the norm runs with the quantization, the activation and add in the epilogue
        self.fused_add = False  # the residual add runs in the GEMM's epilogue
        if isinstance(weight, TernaryTensor):
            self.scales = np.ascontiguousarray(weight.scales, dtype=np.float32)
            self.out_features, self.in_features = weight.shape
            if mode in kernels.PREPARED_MODES:  # once, into the kernel's own layout: no unpacking per call
                self.prepared = kernels.prepare(
                    weight.packed, weight.shape[1], self.scales, weight.group_size, mode=mode
                )
                if self.prepared is not None:
                    release_file_pages(weight.packed)
                    one_scale = weight.scales.shape[1] == 1
                    self.fused = one_scale and kernels.fuses_epilogue(self.prepared.impl, mode)
                    self.fused_add = one_scale and kernels.adds_in_epilogue(self.prepared.impl, mode)
        else:
            self.weight_t = np.ascontiguousarray(np.asarray(weight, dtype=np.float32).T)
            self.in_features, self.out_features = self.weight_t.shape

    def __call__(self, x: np.ndarray, activation: str = "", norm: LayerNorm | None = None) -> np.ndarray:
        """``self(norm(x))`` then ``activation`` (``"gelu"`` / ``"quick_gelu"``).  Where the kernel fuses
        them (AMX, AVX-512 VNNI), the norm runs with the activations' quantization and the activation in
        the GEMM's epilogue: the same bits as the separate passes, which it saves."""
        fused = self.fused and self.prepared is not None and x.dtype == np.float32 and x.flags.c_contiguous
        if norm is not None and not fused:
            x, norm = norm(x), None
        y = self._project(x, activation if fused else "", norm)
        if activation and not fused:
            if not (y.dtype == np.float32 and y.flags.c_contiguous):
                y = np.ascontiguousarray(y, dtype=np.float32)
            kernels.activation_(y, activation)
        return y

    def _project(self, x: np.ndarray, activation: str, norm: LayerNorm | None = None) -> np.ndarray:
        if isinstance(self.weight, TernaryTensor):
            w = self.weight
            out = self.buffers.get(self.role, (x.shape[0], self.out_features)) if self.buffers else None
            if self.prepared is not None:
                ln = None if norm is None else (norm.weight, norm.bias, norm.eps)
                if out is not None and x.dtype == np.float32 and x.flags.c_contiguous:
                    return kernels.gemm_prepared_into(
                        x, self.prepared, self.scales, w.group_size, self.bias, out, activation=activation, norm=ln
                    )
                return kernels.gemm_prepared(
                    x, self.prepared, self.scales, w.group_size, self.bias, out=out, activation=activation, norm=ln
                )
            return kernels.gemm(x, w.packed, w.shape[1], self.scales, w.group_size, self.bias, self.mode, out=out)
        y = x @ self.weight_t
        return y + self.bias if self.bias is not None else y

    def add_to(self, x: np.ndarray, target: np.ndarray) -> None:
        """``target += self(x)``: for the residual stream, in the GEMM's epilogue where the kernel can
        (the same sums either way, bit for bit), which saves a pass over ``target``.  Elsewhere the
        shared output buffer and numpy's add, not the extension's per-call scratch."""
        if (
            self.fused_add
            and self.prepared is not None
            and x.dtype == np.float32
            and x.flags.c_contiguous
            and target.dtype == np.float32
            and target.flags.c_contiguous
            and target.flags.writeable
        ):
            kernels.gemm_prepared_into(x, self.prepared, self.scales, self.weight.group_size, self.bias, target, True)
        else:
            target += self(x)


def release_file_pages(array: np.ndarray) -> None:
    """Give back the resident pages of a memory-mapped file array that nothing will read again.

    Prepared weights are a copy in the kernel's layout; without this the file's 2bit pages touched
    while preparing would stay in the process's RSS beside the copy.  The pages stay in the page cache
    and fault back in if read; arrays not backed by a file are left alone.
    """
    base = array
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    handle = getattr(base, "_mmap", None)
    if handle is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    page = mmap.PAGESIZE
    offset = array.ctypes.data - base.ctypes.data + getattr(base, "offset", 0) % mmap.ALLOCATIONGRANULARITY
    start = -(-offset // page) * page  # whole pages inside the array only
    end = (offset + array.nbytes) // page * page
    if end > start:
        handle.madvise(mmap.MADV_DONTNEED, start, end - start)


class LayerNorm:
    """LayerNorm whose output is consumed at once (it lives in the shared ``ln`` scratch array)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, eps: float, buffers: Buffers):
        self.weight = np.ascontiguousarray(weight, dtype=np.float32)
        self.bias = np.ascontiguousarray(bias, dtype=np.float32)
        self.eps, self.buffers = eps, buffers

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return kernels.layer_norm(x, self.weight, self.bias, self.eps, out=self.buffers.get("ln", x.shape))


@dataclass
class Block:
    """One pre-norm transformer block (open_clip ``ResidualAttentionBlock``)."""

    ln_1: LayerNorm
    in_proj: Linear
    out_proj: Linear
    ln_2: LayerNorm
    c_fc: Linear
    c_proj: Linear
    heads: int
    activation: str
    buffers: Buffers
    fast_attention: bool = False  # the fast and bf16 modes: bf16 attention products where the CPU has them

    def __call__(self, x: np.ndarray, batch: int, causal: bool, rows: np.ndarray | None = None) -> np.ndarray:
        """``x`` is the residual stream ``[batch * tokens, width]``, updated in place (the runtime owns it).

        ``rows``: only these rows of the output are wanted (the pooled tokens, in the last block).
        Every token is still a key and value of the attention, but the projection and the MLP run on
        these rows alone, and the result is ``[len(rows), width]``: the same numbers, since every op
        after the attention works row by row.
        """
        qkv = self.in_proj(x, norm=self.ln_1)
        attended = kernels.attention(
            qkv.reshape(batch, -1, qkv.shape[1]),
            self.heads,
            causal,
            out=self.buffers.get("attention", (batch, x.shape[0] // batch, x.shape[1])),
            fast=self.fast_attention,
        ).reshape(x.shape)
        if rows is not None:
            x, attended = x[rows], np.ascontiguousarray(attended[rows])
        self.out_proj.add_to(attended, x)
        hidden = self.c_fc(x, activation=self.activation, norm=self.ln_2)
        self.c_proj.add_to(hidden, x)
        return x


class TernaryCLIP:
    """A CLIP read from a ``.tclip`` file; ``encode_image`` / ``encode_text`` like open_clip's."""

    def __init__(self, data: TclipModel, mode: str = "fast", threads: int | None = None, batch_size: int = 32):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.threads = check_threads(threads)  # applied in every calling thread (the kernels' count is per thread)
        self.data, self.mode, self.batch_size = data, mode, check_batch_size(batch_size)
        self.arch: ClipArch = check_model(data)  # read() checked a file; a model built in memory is checked here
        self.preprocess = Preprocess.from_meta(data.meta["preprocess"])
        self.tokenize = ClipTokenizer(self.arch.text.context_length)
        activation = "quick_gelu" if self.arch.quick_gelu else "gelu"
        eps = self.arch.norm_eps
        self.ternary_weights = data.ternary
        # The pooled embedding reads one token per sample: the last block's projection and MLP run on
        # those rows only (~6% of a forward pass; the same numbers).  False runs every row, for tests.
        self.pooled_rows_only = True
        self.float_tensors = {k: np.asarray(v, dtype=np.float32) for k, v in data.floats.items()}
        self._buffers = Buffers()

        v = self.arch.vision
        self.patch_embed = self._linear("visual.conv1.weight", None, role="patch")
        self.class_embedding = self.float_tensors["visual.class_embedding"]
        self.visual_pos = self.float_tensors["visual.positional_embedding"]
        self.ln_pre = None if v.no_ln_pre else self._norm("visual.ln_pre", eps)
        self.visual_blocks = [
            self._block(f"visual.transformer.resblocks.{i}", v.heads, activation, eps) for i in range(v.layers)
        ]
        self.ln_post = self._norm("visual.ln_post", eps)
        self.visual_proj = self._linear("visual.proj", None)  # no role: a new array, returned to the caller

        t = self.arch.text
        self.text_pos = self.float_tensors["positional_embedding"]
        self.text_blocks = [
            self._block(f"transformer.resblocks.{i}", t.heads, activation, eps) for i in range(t.layers)
        ]
        self.ln_final = self._norm("ln_final", eps)
        self.text_proj = self._linear("text_projection", None)

    # ------------------------------------------------------------ construction
    def _use_threads(self) -> None:
        if self.threads is not None and kernels.get_num_threads() != self.threads:
            kernels.set_num_threads(self.threads)

    def _linear(self, name: str, bias: str | None, role: str = "") -> Linear:
        if name in self.ternary_weights:
            weight = self.ternary_weights[name]
        else:  # float; projections are stored as torch's x @ P, i.e. [K, N]
            weight = (
                self.float_tensors[name].T if name in ("visual.proj", "text_projection") else self.float_tensors[name]
            )
            weight = weight.reshape(weight.shape[0], -1)
        return Linear(
            weight, self.float_tensors.get(bias) if bias else None, self.mode, self._buffers if role else None, role
        )

    def _norm(self, prefix: str, eps: float) -> LayerNorm:
        return LayerNorm(
            self.float_tensors[prefix + ".weight"], self.float_tensors[prefix + ".bias"], eps, self._buffers
        )

    def _block(self, prefix: str, heads: int, activation: str, eps: float) -> Block:
        return Block(
            ln_1=self._norm(prefix + ".ln_1", eps),
            in_proj=self._linear(prefix + ".attn.in_proj_weight", prefix + ".attn.in_proj_bias", "qkv"),
            out_proj=self._linear(prefix + ".attn.out_proj.weight", prefix + ".attn.out_proj.bias", "proj"),
            ln_2=self._norm(prefix + ".ln_2", eps),
            c_fc=self._linear(prefix + ".mlp.c_fc.weight", prefix + ".mlp.c_fc.bias", "hidden"),
            c_proj=self._linear(prefix + ".mlp.c_proj.weight", prefix + ".mlp.c_proj.bias", "proj"),
            heads=heads,
            activation=activation,
            buffers=self._buffers,
            fast_attention=self.mode != "exact",
        )

    # ------------------------------------------------------------ image tower
    def _image_batch(self, pixels: np.ndarray) -> np.ndarray:
        v = self.arch.vision
        b, p = pixels.shape[0], v.patch_size
        grid = v.image_size // p
        # Patch embedding = a strided conv = a GEMM over flattened (channel, row, column) patches.
        patches = pixels.reshape(b, 3, grid, p, grid, p).transpose(0, 2, 4, 1, 3, 5).reshape(b * grid * grid, -1)
        tokens = self.patch_embed(np.ascontiguousarray(patches)).reshape(b, grid * grid, v.width)
        cls = np.broadcast_to(self.class_embedding, (b, 1, v.width))
        x = (np.concatenate([cls, tokens], axis=1) + self.visual_pos).reshape(-1, v.width)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.ln_pre is not None:
            x = self.ln_pre(x).copy()  # the residual stream needs its own array, not the shared "ln" one
        class_tokens = v.pool_type == "tok" and self.pooled_rows_only  # the last block's MLP for those only
        for block in self.visual_blocks[:-1]:
            x = block(x, b, causal=False)
        x = self.visual_blocks[-1](x, b, causal=False, rows=np.arange(b) * (x.shape[0] // b) if class_tokens else None)
        if class_tokens:
            return self.visual_proj(self.ln_post(x))
        x = x.reshape(b, -1, v.width)
        if v.pool_type == "tok":  # LayerNorm is per token: normalizing only the class token is the same
            pooled = self.ln_post(np.ascontiguousarray(x[:, 0]))
        elif v.final_ln_after_pool:  # average the patch tokens, then LayerNorm
            pooled = self.ln_post(np.ascontiguousarray(x[:, 1:].mean(axis=1)))
        else:  # LayerNorm every token, then average the patch tokens
            pooled = self.ln_post(x.reshape(-1, v.width)).reshape(b, -1, v.width)[:, 1:].mean(axis=1)
        return self.visual_proj(np.ascontiguousarray(pooled, dtype=np.float32))

    def _pixels(self, images) -> np.ndarray:
        size = self.arch.vision.image_size
        if isinstance(images, np.ndarray):
            if images.dtype != np.float32 or images.ndim != 4 or images.shape[1:] != (3, size, size):
                raise ValueError(
                    f"a preprocessed image array must be float32 [B, 3, {size}, {size}], got "
                    f"{images.dtype} {images.shape}"
                )
            return check_finite_pixels(np.ascontiguousarray(images))
        if not isinstance(images, (list, tuple)):
            images = [images]
        return np.stack([self.preprocess(im) for im in images]) if images else np.zeros((0, 3, size, size), np.float32)

    def encode_image(self, images, normalize: bool = False) -> np.ndarray:
        """PIL images, file paths, or a preprocessed float32 array ``[B, 3, H, W]`` -> ``[B, embed_dim]``."""
        pixels = self._pixels(images)
        self._use_threads()
        out = [self._image_batch(pixels[i : i + self.batch_size]) for i in range(0, len(pixels), self.batch_size)]
        return _finish(out, self.arch.embed_dim, normalize)

    # ------------------------------------------------------------ text tower
    def _token_embedding(self, ids: np.ndarray) -> np.ndarray:
        name = "token_embedding.weight"
        if name not in self.ternary_weights:
            return self.float_tensors[name][ids]
        emb = self.ternary_weights[name]
        flat = ids.reshape(-1)
        codes = unpack_2bit_unsigned(emb.packed[flat], emb.shape[1])[:, : emb.shape[1]].astype(np.float32) - 1.0
        rows = emb.scales[flat] if emb.scales.shape[0] > 1 else emb.scales  # per-row scales: only the rows used
        scales = expand_scales(rows, len(flat), emb.shape[1], emb.group_size)
        return (codes * scales).reshape(*ids.shape, emb.shape[1])

    def _pool_index(self, ids: np.ndarray) -> np.ndarray:
        """The position each caption's embedding is read from (open_clip's ``text_global_pool``)."""
        t = self.arch.text
        if t.pool_type == "argmax":
            return ids.argmax(axis=1)
        if t.pool_type == "eos":
            return (ids == t.eos_id).argmax(axis=1)
        if t.pool_type == "first":
            return np.zeros(len(ids), dtype=np.int64)
        return np.full(len(ids), ids.shape[1] - 1)

    def _text_lengths(self, ids: np.ndarray) -> np.ndarray:
        """Tokens each caption needs: with a causal mask nothing after the pooled token reaches it, so
        the tower stops there (open_clip always runs the whole context); non-causal towers need all."""
        if not self.arch.text.causal:
            return np.full(len(ids), ids.shape[1])
        return self._pool_index(ids) + 1

    def _text_batch(self, ids: np.ndarray, length: int | None = None) -> np.ndarray:
        """One batch through the text tower, on its first ``length`` tokens (all when None)."""
        t = self.arch.text
        b = ids.shape[0]
        index = self._pool_index(ids)
        ids = ids[:, : length or ids.shape[1]]
        x = (self._token_embedding(ids) + self.text_pos[: ids.shape[1]]).astype(np.float32).reshape(-1, t.width)
        rows = np.arange(b) * ids.shape[1] + index  # the pooled token of each caption
        for block in self.text_blocks[:-1]:
            x = block(x, b, causal=t.causal)
        if self.pooled_rows_only:  # the last block's MLP for the pooled tokens only
            return self.text_proj(self.ln_final(self.text_blocks[-1](x, b, causal=t.causal, rows=rows)))
        x = self.text_blocks[-1](x, b, causal=t.causal)
        return self.text_proj(np.ascontiguousarray(self.ln_final(x)[rows]))

    def encode_text(self, texts, normalize: bool = False, truncate: bool = True) -> np.ndarray:
        """Strings (or int token ids ``[B, context]``) -> ``[B, embed_dim]``.

        ``truncate``: run a causal tower only up to each batch's last pooled token, captions bucketed by
        length (sorted, then split into batches) so that one long caption does not make short ones pay;
        the embeddings are the same as the full-context forward's (False runs that, for tests).
        """
        if isinstance(texts, np.ndarray) and np.issubdtype(texts.dtype, np.integer):
            ids = texts
        else:
            ids = self.tokenize(texts)
        if ids.ndim != 2 or ids.shape[1] > self.arch.text.context_length:
            raise ValueError(f"token ids must be [B, <= {self.arch.text.context_length}], got {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.arch.text.vocab_size):
            raise ValueError(
                f"token ids must lie in [0, {self.arch.text.vocab_size}), the model's vocabulary; got "
                f"{ids.min()}..{ids.max()} (a model with a smaller vocabulary than CLIP's 49408 "
                "needs its own token ids as an int array)"
            )
        self._use_threads()
        lengths = self._text_lengths(ids) if truncate else np.full(len(ids), ids.shape[1])
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(ids), self.arch.embed_dim), np.float32)
        for i in range(0, len(ids), self.batch_size):
            rows = order[i : i + self.batch_size]
            out[rows] = self._text_batch(ids[rows], int(lengths[rows].max()))
        return _finish([out], self.arch.embed_dim, normalize)


def _finish(chunks: list[np.ndarray], dim: int, normalize: bool) -> np.ndarray:
    out = np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
    if normalize:
        out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32, copy=False)


def load(path: str | os.PathLike, mode: str = "fast", threads: int | None = None, batch_size: int = 32) -> TernaryCLIP:
    """Load a ``.tclip`` model for CPU inference without torch.

    >>> m = ternaryclip.load("model.tclip", mode="fast")                 # doctest: +SKIP
    >>> m.encode_image(["cat.jpg"]) @ m.encode_text(["a cat"]).T         # doctest: +SKIP
    """
    return TernaryCLIP(read(path), mode=mode, threads=threads, batch_size=batch_size)


__all__ = ["ImageError", "TernaryCLIP", "load"]
