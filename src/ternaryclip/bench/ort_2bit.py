"""ONNX Runtime's 2-bit weight path for the bench: exported fp32 MatMul/Gemm -> ``MatMulNBits``.

A user who wants low-bit CLIP on ONNX Runtime would store the ternary weights as 2-bit codes with
zero point 1 (codes 0/1/2 = -1/0/+1) and one scale per output row and block, and run
``com.microsoft.MatMulNBits`` with ``accuracy_level=4`` (int8 activations).  This converts every
MatMul / Gemm whose constant weight is exactly ternary x per-row scale; anything else (the patch
conv, embeddings, attention products) stays as exported.
"""

from __future__ import annotations

import numpy as np

BLOCK = 128  # CLIP's K are multiples of 128; MatMulNBits wants a power of two >= 16


def _ternary_rows(w_nk: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(unsigned codes 0..2 [N, K], row scales [N]) when every row takes at most {-s, 0, +s}.

    The same exact test that ``pack`` applies to a float checkpoint (:func:`detect_ternary`).
    """
    import torch

    from ..pack.export import NotTernaryError, detect_ternary

    try:
        codes, scales = detect_ternary(torch.from_numpy(np.ascontiguousarray(w_nk)))
    except NotTernaryError:
        return None
    row_scales = np.broadcast_to(scales.numpy()[:, 0], (w_nk.shape[0],))
    return (codes.numpy() + 1).astype(np.uint8), row_scales.astype(np.float32)


def _pack(u: np.ndarray, scales: np.ndarray):
    """MatMulNBits initializers: B [N, K/BLOCK, BLOCK/4] (little-endian 2-bit), scales, zero points (= 1)."""
    n, k = u.shape
    blocks = k // BLOCK
    q = u.reshape(n, blocks, BLOCK // 4, 4)
    b = (q[..., 0] | (q[..., 1] << 2) | (q[..., 2] << 4) | (q[..., 3] << 6)).astype(np.uint8)
    block_scales = np.repeat(scales, blocks).astype(np.float32)
    zp_bytes = -(-blocks * 2 // 8)
    zero_points = np.zeros((n, zp_bytes * 4), np.uint8)
    zero_points[:, :blocks] = 1
    zp = zero_points.reshape(n, zp_bytes, 4)
    zp = (zp[..., 0] | (zp[..., 1] << 2) | (zp[..., 2] << 4) | (zp[..., 3] << 6)).astype(np.uint8)
    return b, block_scales, zp.reshape(-1)


def _ternary_weight(node, inits: dict) -> np.ndarray | None:
    """The ``[N, K]`` weight of a MatMul / plain Gemm (y = x W^T + b) when it can become MatMulNBits."""
    from onnx import helper, numpy_helper

    weight_name = node.input[1] if len(node.input) > 1 else None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    gemm_ok = (
        node.op_type == "Gemm"
        and attrs.get("transB") == 1
        and not attrs.get("transA")
        and attrs.get("alpha", 1.0) == 1.0
        and attrs.get("beta", 1.0) == 1.0
    )
    if weight_name not in inits or not (node.op_type == "MatMul" or gemm_ok):
        return None
    w = numpy_helper.to_array(inits[weight_name]).astype(np.float32)
    return (w if node.op_type == "Gemm" else w.T) if w.ndim == 2 else None


def _nbits_nodes(node, w_nk: np.ndarray, found: tuple, graph) -> list:
    """MatMulNBits (+ Add for a Gemm bias) in place of ``node``; its initializers go into ``graph``."""
    from onnx import helper, numpy_helper

    b, scales, zp = _pack(*found)
    prefix = f"{node.input[1]}_2bit"
    graph.initializer.extend(
        [
            numpy_helper.from_array(b, prefix + "_B"),
            numpy_helper.from_array(scales, prefix + "_scales"),
            numpy_helper.from_array(zp, prefix + "_zp"),
        ]
    )
    out = node.output[0] if node.op_type == "MatMul" or len(node.input) < 3 else node.output[0] + "_nobias"
    nodes = [
        helper.make_node(
            "MatMulNBits",
            [node.input[0], prefix + "_B", prefix + "_scales", prefix + "_zp"],
            [out],
            domain="com.microsoft",
            K=int(w_nk.shape[1]),
            N=int(w_nk.shape[0]),
            bits=2,
            block_size=BLOCK,
            accuracy_level=4,
        )
    ]
    if out != node.output[0]:
        nodes.append(helper.make_node("Add", [out, node.input[2]], [node.output[0]]))
    return nodes


def convert(path_in: str, path_out: str) -> int:
    """Rewrite ternary MatMul / Gemm nodes of ``path_in`` as 2-bit MatMulNBits; returns how many."""
    import onnx
    from onnx import helper

    model = onnx.load(path_in)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes, replaced = [], 0
    for node in graph.node:
        w_nk = _ternary_weight(node, inits)
        found = _ternary_rows(w_nk) if w_nk is not None and w_nk.shape[1] % BLOCK == 0 else None
        if found is not None:
            nodes.extend(_nbits_nodes(node, w_nk, found, graph))
            replaced += 1
        else:
            nodes.append(node)
    used = {i for n in nodes for i in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, path_out)
    return replaced
