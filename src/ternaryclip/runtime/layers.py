"""The layers of the torch-free forward pass: linear, LayerNorm, transformer block and their scratch arrays.

Each layer reads like its open_clip counterpart (``ResidualAttentionBlock``: ``x = x + attn(ln_1(x));
x = x + mlp(ln_2(x))``).  Every ternary linear layer goes through the ternary GEMM (``fast``: int8
activations, W1.58-A8; ``exact``: float activations, W1.58-A16; ``bf16``: activations rounded to bf16,
W1.58-A16 on AMX-BF16); LayerNorm, GELU and attention run in float32 kernels.
"""

from __future__ import annotations

import math
import mmap
import threading
from dataclasses import dataclass

import numpy as np

from .. import kernels
from ..pack.format import TernaryTensor


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
        """``self(norm(x))`` then ``activation`` (``"gelu"`` / ``"quick_gelu"`` / ``"gelu_tanh"``).  Where the
        kernel fuses them (AMX, AVX-512 VNNI), the norm runs with the activations' quantization and the
        activation in the GEMM's epilogue: the same bits as the separate passes, which it saves."""
        fused = (
            self.fused
            and self.prepared is not None
            and x.dtype == np.float32
            and x.flags.c_contiguous
            and activation in kernels.ACTIVATIONS
        )
        if norm is not None and not fused:
            x, norm = norm(x), None
        y = self._project(x, activation if fused else "", norm)
        if activation and not fused:
            if not (y.dtype == np.float32 and y.flags.c_contiguous):
                y = np.ascontiguousarray(y, dtype=np.float32)
            activate_(y, activation)
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


_TANH_C = math.sqrt(2.0 / math.pi)


def activate_(y: np.ndarray, kind: str) -> None:
    """In place: the kernels' ``gelu`` / ``quick_gelu``, or ``gelu_tanh`` (torch's ``GELU(approximate="tanh")``,
    SigLIP's), which has no kernel yet and runs in numpy."""
    if kind != "gelu_tanh":
        kernels.activation_(y, kind)
        return
    inner = y * y
    inner *= 0.044715 * _TANH_C
    inner += _TANH_C
    inner *= y
    np.tanh(inner, out=inner)
    inner += 1.0
    y *= 0.5
    y *= inner


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
    int8_attention: bool = False  # the fast mode: int8 products instead where the kernels have them

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
            int8=self.int8_attention,
        ).reshape(x.shape)
        if rows is not None:
            x, attended = x[rows], np.ascontiguousarray(attended[rows])
        self.out_proj.add_to(attended, x)
        hidden = self.c_fc(x, activation=self.activation, norm=self.ln_2)
        self.c_proj.add_to(hidden, x)
        return x


class AttentionPool:
    """SigLIP's "map" head (timm ``AttentionPoolLatent``, HF ``SiglipMultiheadAttentionPoolingHead``).

    One learned probe attends over every token of an image, then ``x = x + mlp(ln(x))``.  The probe's
    query is the same for every image, so it is computed once here; keys and values are one GEMM.
    """

    def __init__(
        self,
        query: np.ndarray,
        kv: Linear,
        out_proj: Linear,
        ln: LayerNorm,
        c_fc: Linear,
        c_proj: Linear,
        heads: int,
        activation: str,
    ):
        self.query = np.ascontiguousarray(query, dtype=np.float32).reshape(heads, -1)  # [heads, head_width]
        self.kv, self.out_proj, self.ln, self.c_fc, self.c_proj = kv, out_proj, ln, c_fc, c_proj
        self.heads, self.activation = heads, activation

    def __call__(self, x: np.ndarray, batch: int) -> np.ndarray:
        """``x [batch * tokens, width]`` -> ``[batch, width]``."""
        width = x.shape[1]
        kv = self.kv(x).reshape(batch, -1, 2, self.heads, width // self.heads)
        keys, values = kv[:, :, 0], kv[:, :, 1]  # [batch, tokens, heads, head_width]
        scores = np.einsum("hd,bthd->bht", self.query, keys) / np.float32(math.sqrt(width // self.heads))
        scores = np.exp(scores - scores.max(axis=2, keepdims=True))
        scores /= scores.sum(axis=2, keepdims=True)
        attended = np.einsum("bht,bthd->bhd", scores, values).reshape(batch, width)
        pooled = self.out_proj(np.ascontiguousarray(attended, dtype=np.float32))  # a new array: the residual
        hidden = self.c_fc(pooled, activation=self.activation, norm=self.ln)
        self.c_proj.add_to(hidden, pooled)
        return pooled
