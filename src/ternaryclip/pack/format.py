"""The ``.tclip`` file: one safetensors file holding packed ternary tensors, float tensors and JSON metadata.

Layout (see :mod:`ternaryclip.pack.bits` for the bit layouts)::

    <name>.ternary   uint8    2bit: [N, ceil(K/128)*32]    base3: [ceil(N*K/5)]
    <name>.scale     float32  [1 or N, 1 or ceil(K/group_size)]
    <name>           float32 | float16, any shape (LayerNorms, biases, embeddings kept float)
    <name>           uint8 [n]: a file the model carries, gzip-compressed (``blobs``: the tokenizer's JSON)
    __metadata__.tclip  JSON: format, version, arch, preprocess, tokenizer, quantization,
                        provenance, and ``tensors``: one manifest entry per model tensor with its
                        kind, shapes, packing and the CRC-32 of every stored array.

Ternary matrices are stored in ``[N outputs, K inputs]`` orientation; ``torch_shape`` and ``out_axis``
say how the torch parameter looks (a conv kernel, or ``x @ P`` projections stored transposed).

Reading trusts nothing: the header length, the JSON (and the CRC-32 of the metadata), every dtype,
shape and byte range, every CRC, the architecture and preprocessing fields (types, bounds, enums) and
the match between the architecture and the tensors present are checked before an array is handed
out or anything sized by the file is allocated, so a truncated, bit-flipped or inconsistent file
raises :class:`TclipError` instead of reaching the C++ kernels.  What a file can make the reader
allocate is bounded by its size (base3 codes expand at most ``MAX_EXPANSION`` times).  Arrays are
zero-copy views of a read-only memory map, which keeps a loaded model's resident memory close to
its file size.

Over 350 lines on purpose: the reader checks every metadata field against its tensors before use, and
those checks sit beside the writer that produces them.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..arch import ClipArch, PreprocessSpec
from ..choices import PACKINGS
from ..files import atomic_write
from .bits import (
    PackingError,
    base3_to_2bit,
    check_2bit,
    pack_2bit,
    pack_base3,
    packed_2bit_shape,
    packed_base3_size,
    unpack_2bit,
)

FORMAT = "tclip"
VERSION = 3  # the newest this reader reads; 3: blobs (a file only with blobs is written as 3, others as 2)
PLAIN_VERSION = 2  # 2: the metadata carries a CRC-32 (version 1 files, without it, are still read)
FLOAT_DTYPES = {"fp32": np.float32, "fp16": np.float16}
MAX_HEADER_BYTES = 64 << 20
MAX_DIM = 1 << 31  # any tensor dimension; keeps every product of two within int64
# Bytes the reader may allocate for converted tensors: MAX_EXPANSION x the file size, plus a slack.
MAX_EXPANSION = 4
EXPANSION_SLACK = 16 << 20
META_CRC_KEY = "tclip_crc32"
MAX_BLOB_BYTES = 256 << 20  # what a blob may expand to: far above any tokenizer's JSON
_ST_DTYPES = {"U8": np.uint8, "F32": np.float32, "F16": np.float16}


class TclipError(ValueError):
    """A ``.tclip`` file that cannot be used: missing, truncated, corrupt, or of an unknown version."""


def expand_scales(scales: np.ndarray, n: int, k: int, group_size: int) -> np.ndarray:
    """Broadcast ``[A, B]`` scales to ``[N, K]`` (B > 1 means groups of ``group_size`` inputs)."""
    if scales.shape[1] > 1:
        scales = np.repeat(scales, group_size, axis=1)[:, :k]
    return np.broadcast_to(scales, (n, k))


@dataclass
class TernaryTensor:
    """A ternary matrix ``scale * code`` with codes held in the 2bit kernel layout."""

    packed: np.ndarray  # uint8 [N, Kp / 4]
    scales: np.ndarray  # float32 [1 or N, 1 or ceil(K / group_size)]
    shape: tuple[int, int]
    group_size: int = 128
    torch_shape: tuple[int, ...] | None = None
    out_axis: int = 0
    kind: str = "linear"

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        self.torch_shape = tuple(self.torch_shape) if self.torch_shape is not None else self.shape
        n, k = self.shape
        groups = -(-k // self.group_size)
        if self.scales.ndim != 2 or self.scales.shape[0] not in (1, n) or self.scales.shape[1] not in (1, groups):
            raise ValueError(
                f"scales of shape {self.scales.shape} do not fit a [{n}, {k}] matrix with group_size {self.group_size}"
            )
        if tuple(self.packed.shape) != packed_2bit_shape(n, k):
            raise ValueError(f"packed codes of shape {self.packed.shape}, expected {packed_2bit_shape(n, k)}")

    @classmethod
    def from_codes(cls, codes: np.ndarray, scales: np.ndarray, group_size: int = 128, **kwargs) -> TernaryTensor:
        codes = np.asarray(codes)
        return cls(pack_2bit(codes), np.ascontiguousarray(scales, dtype=np.float32), codes.shape, group_size, **kwargs)

    def codes(self) -> np.ndarray:
        """int8 ``[N, K]`` in {-1, 0, +1}."""
        return unpack_2bit(self.packed, self.shape[1])

    def dequantize(self) -> np.ndarray:
        """float32 ``[N, K]`` = scale * code."""
        n, k = self.shape
        return self.codes() * expand_scales(self.scales, n, k, self.group_size)

    def torch_layout(self) -> np.ndarray:
        """The dequantized weight shaped like the torch parameter it came from."""
        m = self.dequantize()
        return np.ascontiguousarray(m.T) if self.out_axis == 1 else m.reshape(self.torch_shape)

    @property
    def numel(self) -> int:
        return self.shape[0] * self.shape[1]


@dataclass
class TclipModel:
    """Everything in a ``.tclip`` file: metadata and numpy tensors (no torch)."""

    meta: dict
    ternary: dict[str, TernaryTensor] = field(default_factory=dict)
    floats: dict[str, np.ndarray] = field(default_factory=dict)
    path: str | None = None
    blobs: dict[str, bytes] = field(default_factory=dict)  # whole files the model needs (a tokenizer's JSON)

    @property
    def arch(self) -> ClipArch:
        return ClipArch.from_dict(self.meta["arch"])

    @property
    def packing(self) -> str:
        return self.meta.get("quantization", {}).get("packing", "2bit")


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).view(np.uint8).reshape(-1).data)


def write(model: TclipModel, path: str | os.PathLike, packing: str = "2bit", float_dtype: str = "fp32") -> Path:
    """Write ``model`` to ``path`` atomically (temp file in the same folder, then rename)."""
    if packing not in PACKINGS:
        raise ValueError(f"unknown packing {packing!r}: expected one of {', '.join(PACKINGS)}")
    if float_dtype not in FLOAT_DTYPES:
        raise ValueError(f"unknown float dtype {float_dtype!r}: expected one of {', '.join(FLOAT_DTYPES)}")
    tensors: dict[str, np.ndarray] = {}
    manifest: dict[str, dict] = {}
    for name, t in model.ternary.items():
        data = t.packed if packing == "2bit" else pack_base3(t.codes())
        tensors[name + ".ternary"], tensors[name + ".scale"] = data, t.scales.astype(np.float32)
        manifest[name] = {
            "kind": "ternary",
            "role": t.kind,
            "shape": list(t.shape),
            "torch_shape": list(t.torch_shape),
            "out_axis": t.out_axis,
            "group_size": t.group_size,
            "scale_shape": list(t.scales.shape),
            "crc32": _crc(data),
            "scale_crc32": _crc(tensors[name + ".scale"]),
        }
    for name, a in model.floats.items():
        if name in manifest:
            raise ValueError(f"tensor {name!r} is both ternary and float")
        tensors[name] = np.asarray(a, dtype=FLOAT_DTYPES[float_dtype], order="C")  # keeps 0-d shapes
        manifest[name] = {"kind": "float", "shape": list(a.shape), "dtype": float_dtype, "crc32": _crc(tensors[name])}
    for name, blob in model.blobs.items():
        if name in manifest:
            raise ValueError(f"blob {name!r} has the name of a tensor")
        tensors[name] = np.frombuffer(gzip.compress(bytes(blob), mtime=0), dtype=np.uint8)
        manifest[name] = {
            "kind": "blob",
            "shape": [tensors[name].size],
            "encoding": "gzip",
            "crc32": _crc(tensors[name]),
        }
    version = VERSION if model.blobs else PLAIN_VERSION
    meta = {**model.meta, "format": FORMAT, "version": version, "tensors": manifest}
    meta["quantization"] = {**meta.get("quantization", {}), "packing": packing, "float_dtype": float_dtype}
    text = json.dumps(meta)

    from safetensors.numpy import save_file

    st_meta = {"tclip": text, META_CRC_KEY: str(zlib.crc32(text.encode("utf-8")))}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=st_meta))


def _fail(path, message: str) -> TclipError:
    return TclipError(f"{path}: {message}")


def _read_header(path: Path, mm: np.ndarray) -> tuple[dict, int]:
    size = mm.size
    if size < 8:
        raise _fail(path, f"file is {size} bytes, too short to be a .tclip (truncated?)")
    (n,) = struct.unpack("<Q", mm[:8].tobytes())
    if n < 2 or n > MAX_HEADER_BYTES or n > size - 8:
        raise _fail(path, f"header length {n} does not fit the {size}-byte file (truncated or not a .tclip)")
    try:
        header = json.loads(mm[8 : 8 + n].tobytes().decode("utf-8"))
    except (ValueError, RecursionError) as err:  # bad UTF-8 or JSON, too deep, too long a number
        raise _fail(path, f"header is not valid JSON ({err}); the file is corrupt") from None
    if not isinstance(header, dict):
        raise _fail(path, "header is not a JSON object; the file is corrupt")
    return header, 8 + n


def _parse_meta(path: Path, header: dict, verify: bool) -> dict:
    st_meta = header.get("__metadata__")
    if not isinstance(st_meta, dict) or "tclip" not in st_meta:
        raise _fail(path, "no tclip metadata: a plain safetensors file? convert it with `ternaryclip pack`")
    text = st_meta["tclip"]
    if not isinstance(text, str):
        raise _fail(path, "tclip metadata is not a string; the file is corrupt")
    crc = st_meta.get(META_CRC_KEY)
    if verify and crc is not None and crc != str(zlib.crc32(text.encode("utf-8", "surrogatepass"))):
        raise _fail(path, "metadata CRC mismatch: the metadata is corrupt")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise _fail(path, f"tclip metadata is not valid JSON ({err}); the file is corrupt") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _fail(path, "metadata does not declare format 'tclip'")
    if crc is None and meta.get("version") == 1:
        pass  # version 1 files predate the metadata CRC; every semantic check below still applies
    elif crc is None and meta.get("version") in (PLAIN_VERSION, VERSION):
        raise _fail(path, "no metadata CRC: the metadata is corrupt")
    elif meta.get("version") not in (PLAIN_VERSION, VERSION):
        raise _fail(
            path,
            f"format version {meta.get('version')!r} is not supported; this ternaryclip reads "
            f"versions 1 to {VERSION} (a newer file needs a newer ternaryclip)",
        )
    if not isinstance(meta.get("tensors"), dict) or not isinstance(meta.get("arch"), dict):
        raise _fail(path, "metadata lacks the tensors manifest or the architecture")
    if not meta["tensors"]:
        raise _fail(path, "the tensors manifest is empty")
    return meta


def _int_list(value, length: int | None = None) -> list[int] | None:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_DIM for v in value):
        return None
    return value


def _expected_entries(path: Path, name: str, spec: dict, packing: str) -> dict[str, tuple[str, list[int]]]:
    """The safetensors entries (dtype, shape) that manifest entry ``spec`` requires."""
    if not isinstance(spec, dict):
        raise _fail(path, f"manifest entry for {name!r} is not an object")
    if spec.get("kind") == "float":
        shape = _int_list(spec.get("shape"))
        if shape is None or spec.get("dtype") not in ("fp32", "fp16"):
            raise _fail(path, f"manifest entry for float tensor {name!r} has a bad shape or dtype")
        return {name: ("F32" if spec["dtype"] == "fp32" else "F16", shape)}
    if spec.get("kind") == "blob":
        shape = _int_list(spec.get("shape"), 1)
        if shape is None or spec.get("encoding") != "gzip":
            raise _fail(path, f"manifest entry for blob {name!r} has a bad shape or encoding")
        return {name: ("U8", shape)}
    if spec.get("kind") != "ternary":
        raise _fail(path, f"manifest entry for {name!r} has unknown kind {spec.get('kind')!r}")
    shape, scale_shape = _int_list(spec.get("shape"), 2), _int_list(spec.get("scale_shape"), 2)
    group = spec.get("group_size")
    if shape is None or scale_shape is None or not isinstance(group, int) or not 1 <= group <= MAX_DIM:
        raise _fail(path, f"manifest entry for ternary tensor {name!r} has a bad shape, scale shape or group size")
    n, k = shape
    torch_shape, out_axis = _int_list(spec.get("torch_shape")), spec.get("out_axis", 0)
    if torch_shape is None or out_axis not in (0, 1) or isinstance(out_axis, bool) or not 1 <= len(torch_shape) <= 4:
        raise _fail(path, f"manifest entry for ternary tensor {name!r} has a bad torch_shape or out_axis")
    matrix = (torch_shape[1], torch_shape[0]) if out_axis == 1 and len(torch_shape) == 2 else None
    if out_axis == 0:
        matrix = (torch_shape[0], math.prod(torch_shape[1:]))
    if matrix != (n, k) or min(n, k) < 1:
        raise _fail(
            path, f"ternary tensor {name!r}: shape {shape} does not fit torch shape {torch_shape} / axis {out_axis}"
        )
    if scale_shape[0] not in (1, n) or scale_shape[1] not in (1, -(-k // group)):
        raise _fail(path, f"scale shape {scale_shape} of {name!r} does not fit its shape {shape}")
    packed = list(packed_2bit_shape(n, k)) if packing == "2bit" else [packed_base3_size(n, k)]
    return {name + ".ternary": ("U8", packed), name + ".scale": ("F32", scale_shape)}


def _check_entries(path: Path, header: dict, expected: dict, data_len: int) -> None:
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    missing, extra = sorted(set(expected) - set(entries)), sorted(set(entries) - set(expected))
    if missing or extra:
        raise _fail(path, f"tensors do not match the manifest (missing {missing[:3]}, unexpected {extra[:3]})")
    for key, (dtype, shape) in expected.items():
        e = entries[key]
        offsets = _int_list(e.get("data_offsets"), 2) if isinstance(e, dict) else None
        if not isinstance(e, dict) or e.get("dtype") != dtype or e.get("shape") != shape or offsets is None:
            raise _fail(
                path,
                f"tensor {key!r} is {e.get('dtype') if isinstance(e, dict) else e} "
                f"{e.get('shape') if isinstance(e, dict) else ''}, expected {dtype} {shape}",
            )
        start, stop = offsets
        nbytes = math.prod(shape) * np.dtype(_ST_DTYPES[dtype]).itemsize
        if stop - start != nbytes or stop > data_len or start > stop:
            raise _fail(
                path,
                f"tensor {key!r} claims bytes {start}..{stop} but needs {nbytes} "
                f"within {data_len} data bytes (truncated or corrupt)",
            )


def read(path: str | os.PathLike, verify: bool = True) -> TclipModel:
    """Read and validate a ``.tclip`` file (numpy only).  ``verify`` checks CRCs and code validity."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such file")
    try:
        mm = np.memmap(path, dtype=np.uint8, mode="r")
    except (ValueError, OSError) as err:  # empty file, unreadable
        raise _fail(path, f"cannot be mapped ({err})") from None
    header, data_start = _read_header(path, mm)
    meta = _parse_meta(path, header, verify)
    packing = meta.get("quantization", {}).get("packing") if isinstance(meta.get("quantization"), dict) else None
    if packing not in PACKINGS:
        raise _fail(path, f"unknown packing {packing!r}")
    manifest = meta.pop("tensors")
    expected: dict[str, tuple[str, list[int]]] = {}
    for name, spec in manifest.items():
        expected.update(_expected_entries(path, name, spec, packing))
    _check_entries(path, header, expected, mm.size - data_start)
    _check_semantics(path, meta, manifest)
    _check_expansion(path, manifest, packing, mm.size)

    def array(key: str) -> np.ndarray:
        e = header[key]
        dtype = np.dtype(_ST_DTYPES[e["dtype"]])
        start = data_start + e["data_offsets"][0]
        return np.frombuffer(mm, dtype=dtype, count=math.prod(e["shape"]), offset=start).reshape(e["shape"])

    model = TclipModel(meta=meta, path=str(path))
    for name, spec in manifest.items():
        try:
            _load_tensor(model, name, spec, array, packing, verify)
        except (PackingError, ValueError) as err:
            raise _fail(path, f"tensor {name!r}: {err}") from None
    return model


def check_meta(meta: dict, shapes: dict[str, tuple[int, ...]], ternary: set[str]) -> ClipArch:
    """ValueError unless the architecture and preprocessing are sane and match the tensors' torch shapes."""
    arch = ClipArch.from_dict(meta.get("arch"))
    preprocess = PreprocessSpec.from_meta(meta.get("preprocess"))
    if preprocess.size != arch.vision.image_size:
        raise ValueError(
            f"preprocess.size {preprocess.size} differs from arch.vision.image_size {arch.vision.image_size}"
        )
    arch.check_tensors(shapes, ternary)
    return arch


def check_model(model: TclipModel) -> ClipArch:
    """The checks :func:`read` makes, for a model built in memory (ValueError names what is wrong)."""
    shapes = {n: tuple(t.torch_shape) for n, t in model.ternary.items()}
    shapes.update({n: tuple(np.shape(a)) for n, a in model.floats.items()})
    arch = check_meta(model.meta, shapes, set(model.ternary))
    for name, a in model.floats.items():
        if not np.all(np.isfinite(a)):
            raise ValueError(f"float tensor {name!r} holds NaN or infinite values")
    return arch


def _check_semantics(path: Path, meta: dict, manifest: dict) -> None:
    """The architecture and preprocessing are sane and match the tensors present (before any allocation)."""
    shapes = {
        n: tuple(s["torch_shape" if s["kind"] == "ternary" else "shape"])
        for n, s in manifest.items()
        if s["kind"] != "blob"
    }
    try:
        check_meta(meta, shapes, {n for n, s in manifest.items() if s["kind"] == "ternary"})
    except ValueError as err:
        raise _fail(path, str(err)) from None


def _check_expansion(path: Path, manifest: dict, packing: str, file_bytes: int) -> None:
    """Refuse a file whose base3 codes would expand to far more memory than the file holds."""
    if packing != "base3":
        return
    need = sum(math.prod(packed_2bit_shape(*s["shape"])) for s in manifest.values() if s["kind"] == "ternary")
    limit = MAX_EXPANSION * file_bytes + EXPANSION_SLACK
    if need > limit:
        raise _fail(
            path,
            f"its base3 codes would expand to {need} bytes in memory, more than {MAX_EXPANSION}x the "
            f"{file_bytes}-byte file allows (rows far shorter than the 128-code block?)",
        )


def _base3_to_2bit(data: np.ndarray, n: int, k: int) -> np.ndarray:
    """The C++ converter when the extension is built (about 10x faster), else numpy's."""
    try:
        from ..kernels import _ext
    except ImportError:
        return base3_to_2bit(data, n, k)
    try:
        return _ext.base3_to_2bit(np.ascontiguousarray(data), n, k)
    except ValueError as err:
        raise PackingError(str(err)) from None


def _gunzip(data: bytes) -> bytes:
    """The gzip stream's content, refused past ``MAX_BLOB_BYTES`` (a small file must not expand to gigabytes)."""
    inflate = zlib.decompressobj(wbits=31)
    try:
        out = inflate.decompress(data, MAX_BLOB_BYTES)
    except zlib.error as err:
        raise ValueError(f"not gzip data ({err})") from None
    if inflate.unconsumed_tail:
        raise ValueError(f"expands to more than {MAX_BLOB_BYTES} bytes")
    if not inflate.eof:
        raise ValueError("truncated gzip data")
    return out


def _load_tensor(model: TclipModel, name: str, spec: dict, array, packing: str, verify: bool) -> None:
    if spec["kind"] == "blob":
        data = array(name)
        if verify and _crc(data) != spec.get("crc32"):
            raise ValueError("CRC mismatch: the data is corrupt")
        model.blobs[name] = _gunzip(data.tobytes())
        return
    if spec["kind"] == "float":
        data = array(name)
        if verify and _crc(data) != spec.get("crc32"):
            raise ValueError("CRC mismatch: the data is corrupt")
        if not np.all(np.isfinite(data)):
            raise ValueError("holds NaN or infinite values")
        model.floats[name] = data
        return
    data, scales = array(name + ".ternary"), array(name + ".scale")
    if verify and (_crc(data) != spec.get("crc32") or _crc(scales) != spec.get("scale_crc32")):
        raise ValueError("CRC mismatch: the data is corrupt")
    if not np.all(np.isfinite(scales) & (scales >= 0)):
        raise ValueError("scales must be finite and non-negative")
    n, k = spec["shape"]
    if packing == "base3":
        data = _base3_to_2bit(data, n, k)
    elif verify:
        check_2bit(data, k)
    torch_shape, out_axis = spec["torch_shape"], spec.get("out_axis", 0)  # checked by _expected_entries
    model.ternary[name] = TernaryTensor(
        data, scales, (n, k), spec["group_size"], torch_shape, out_axis, spec.get("role", "linear")
    )
