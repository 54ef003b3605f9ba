"""Bit packing of ternary codes (numpy only: the runtime uses this without torch).

A ternary value ``t`` in {-1, 0, +1} is stored as the unsigned code ``u = t + 1`` in {0, 1, 2}.

``2bit`` layout -- the one the CPU kernel reads directly
    A matrix ``[N, K]`` is stored row by row.  Each row is padded to ``Kp = ceil(K / 128) * 128``
    codes with ``u = 1`` (value 0) and split into blocks of 128 codes = 32 bytes.  Within a block,
    byte ``j`` (0..31) holds the codes of columns ``j, j + 32, j + 64, j + 96`` in its bit pairs
    0-1, 2-3, 4-5, 6-7.  So one 32-byte AVX2 load, shifted by 0/2/4/6 and masked with 3, gives the
    codes of 32 *consecutive* columns, ready for ``maddubs`` against 32 int8 activations.  Stored
    shape: ``uint8 [N, Kp / 4]``.  The code 3 never occurs.

``base3`` layout -- the smallest file
    All ``N * K`` codes, row-major, five a byte: ``byte = u0 + 3 u1 + 9 u2 + 27 u3 + 81 u4``
    (3^5 = 243 <= 256, so 1.6 bits a weight).  The tail is padded with ``u = 1``.  Stored shape:
    ``uint8 [ceil(N K / 5)]``.  Bytes 243..255 never occur.  Converted to 2bit at load.
"""

from __future__ import annotations

import numpy as np

BLOCK = 128  # codes per 2bit block (32 bytes)
_BLOCK_BYTES = BLOCK // 4
_TRITS = 5
_POW3 = np.array([1, 3, 9, 27, 81], dtype=np.uint8)
# _BASE3_DIGITS[b] = the five codes packed in byte b (rows 243..255 are invalid and never used).
_BASE3_DIGITS = ((np.arange(256)[:, None] // np.array([1, 3, 9, 27, 81])) % 3).astype(np.uint8)


class PackingError(ValueError):
    """Packed bytes that cannot come from valid ternary codes (a corrupt file)."""


def padded_k(k: int) -> int:
    """Row length in codes after padding to whole 128-code blocks."""
    return -(-k // BLOCK) * BLOCK


def packed_2bit_shape(n: int, k: int) -> tuple[int, int]:
    return (n, padded_k(k) // 4)


def packed_base3_size(n: int, k: int) -> int:
    return -(-(n * k) // _TRITS)


def _unsigned(codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"ternary codes must be a 2-D [N, K] array, got shape {codes.shape}")
    if codes.size and (codes.min() < -1 or codes.max() > 1):
        raise ValueError("ternary codes must be in {-1, 0, +1}")
    return (codes.astype(np.int16) + 1).astype(np.uint8)


def pack_2bit(codes: np.ndarray) -> np.ndarray:
    """int8 codes ``[N, K]`` in {-1, 0, 1} -> ``uint8 [N, Kp / 4]`` in the kernel's block layout."""
    u = _unsigned(codes)
    n, k = u.shape
    padded = np.ones((n, padded_k(k)), dtype=np.uint8)
    padded[:, :k] = u
    blocks = padded.reshape(n, padded_k(k) // BLOCK, 4, _BLOCK_BYTES)
    packed = blocks[:, :, 0] | (blocks[:, :, 1] << 2) | (blocks[:, :, 2] << 4) | (blocks[:, :, 3] << 6)
    return np.ascontiguousarray(packed.reshape(n, padded_k(k) // 4))


def unpack_2bit_unsigned(packed: np.ndarray, k: int) -> np.ndarray:
    """``uint8 [N, Kp / 4]`` -> unsigned codes ``uint8 [N, Kp]`` (padding included)."""
    n, kp = packed.shape[0], padded_k(k)
    blocks = packed.reshape(n, kp // BLOCK, 1, _BLOCK_BYTES)
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)
    return ((blocks >> shifts) & 3).reshape(n, kp)


def unpack_2bit(packed: np.ndarray, k: int) -> np.ndarray:
    """Inverse of :func:`pack_2bit`: int8 codes ``[N, K]``."""
    return (unpack_2bit_unsigned(packed, k)[:, :k].astype(np.int8) - 1).astype(np.int8)


def check_2bit(packed: np.ndarray, k: int) -> None:
    """Raise PackingError if any code is 3 or any padding code is not 1 (value 0)."""
    low, high = packed & 0x55, (packed >> 1) & 0x55
    if np.any(low & high):
        raise PackingError("2bit data holds the invalid code 3")
    if padded_k(k) != k:
        tail = unpack_2bit_unsigned(packed, k)[:, k:]
        if np.any(tail != 1):
            raise PackingError("2bit row padding holds nonzero codes")


def pack_base3(codes: np.ndarray) -> np.ndarray:
    """int8 codes ``[N, K]`` -> ``uint8 [ceil(N K / 5)]``, five codes a byte."""
    u = _unsigned(codes).reshape(-1)
    padded = np.ones(packed_base3_size(1, u.size) * _TRITS, dtype=np.uint8)
    padded[: u.size] = u
    return (padded.reshape(-1, _TRITS) * _POW3).sum(axis=1, dtype=np.uint16).astype(np.uint8)


def _check_base3(packed: np.ndarray, n: int, k: int) -> None:
    if packed.size != packed_base3_size(n, k):
        raise PackingError(f"base3 data has {packed.size} bytes, expected {packed_base3_size(n, k)} for [{n}, {k}]")
    if packed.size == 0:
        return
    if packed.max() >= 243:
        raise PackingError("base3 data holds a byte >= 243, which no five trits produce")
    used_in_last = (n * k) % _TRITS or _TRITS
    if np.any(_BASE3_DIGITS[packed[-1]][used_in_last:] != 1):
        raise PackingError("base3 padding holds nonzero codes")


def unpack_base3(packed: np.ndarray, n: int, k: int) -> np.ndarray:
    """Inverse of :func:`pack_base3`: int8 codes ``[N, K]``; PackingError on invalid bytes or padding."""
    _check_base3(packed, n, k)
    u = _BASE3_DIGITS[packed].reshape(-1)[: n * k]
    return (u.astype(np.int8) - 1).reshape(n, k)


def base3_to_2bit(packed: np.ndarray, n: int, k: int, rows_per_chunk: int = 4096) -> np.ndarray:
    """Convert base3 bytes to the 2bit kernel layout a few thousand rows at a time (bounded memory)."""
    _check_base3(packed, n, k)
    out = np.empty(packed_2bit_shape(n, k), dtype=np.uint8)
    for start in range(0, n, rows_per_chunk):
        stop = min(n, start + rows_per_chunk)
        first, last = start * k, stop * k  # code indices of this chunk
        byte0, byte1 = first // _TRITS, -(-last // _TRITS)
        u = _BASE3_DIGITS[packed[byte0:byte1]].reshape(-1)[first - byte0 * _TRITS :][: last - first]
        out[start:stop] = pack_2bit(u.reshape(stop - start, k).astype(np.int8) - 1)
    return out
