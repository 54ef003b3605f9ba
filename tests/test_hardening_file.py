"""A ``.tclip`` whose bytes are consistent but whose meaning is not, and runtime inputs that used to crash.

Files here are built with numpy only, from an architecture dict, so that each test can make exactly
the inconsistency it is about; the metadata CRC is recomputed so the semantic checks are what catch
it.  Crash classes run in a subprocess under a timeout and an address-space limit.
"""

import json
import math
import os
import resource
import struct
import subprocess
import sys
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

import ternaryclip.runtime as runtime
from ternaryclip import kernels
from ternaryclip.arch import ClipArch
from ternaryclip.data.images import decode_rgb
from ternaryclip.pack import TclipError, read
from ternaryclip.pack.format import TclipModel, TernaryTensor, write
from ternaryclip.runtime.preprocess import ImageError

ARCH = {
    "embed_dim": 16,
    "vision": {"image_size": 16, "patch_size": 8, "width": 32, "layers": 2, "heads": 2, "mlp_width": 64},
    "text": {"context_length": 8, "vocab_size": 50, "width": 24, "heads": 2, "layers": 2, "mlp_width": 48},
}
PREPROCESS = {"size": 16, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}
MATRICES = ("conv1.weight", "proj", "projection", "_weight", "c_fc.weight", "c_proj.weight", "token_embedding.weight")


def build(arch: dict = ARCH, preprocess: dict = PREPROCESS, seed: int = 0) -> TclipModel:
    """A random model with every tensor ``arch`` needs: matrices ternary, the rest float."""
    rng = np.random.default_rng(seed)
    model = TclipModel(meta={"arch": arch, "preprocess": preprocess})
    for name, shape in ClipArch.from_dict(arch).tensor_shapes().items():
        if name.endswith(MATRICES) and "ln_" not in name:
            out_axis = 1 if name in ("visual.proj", "text_projection") else 0
            n, k = (shape[1], shape[0]) if out_axis else (shape[0], math.prod(shape[1:]))
            codes = rng.integers(-1, 2, size=(n, k)).astype(np.int8)
            scales = np.full((1, 1), k**-0.5, np.float32)
            model.ternary[name] = TernaryTensor.from_codes(codes, scales, 128, torch_shape=shape, out_axis=out_axis)
        elif name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or ".ln_" in name or "ln_final" in name:
            model.floats[name] = np.ones(shape, np.float32) if name.endswith("weight") else np.zeros(shape, np.float32)
        else:
            model.floats[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    return model


def rewrite_meta(path, out, edit, edit_text=lambda text: text):
    """Apply ``edit`` (then ``edit_text``) to the tclip metadata of ``path``, recompute its CRC, write ``out``."""
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["tclip"])
    edit(meta)
    text = edit_text(json.dumps(meta))
    header["__metadata__"].update(tclip=text, tclip_crc32=str(zlib.crc32(text.encode())))
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + data[8 + n :])
    return out


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    return write(build(), tmp_path_factory.mktemp("good") / "good.tclip")


def test_a_built_file_loads_and_encodes_finite_embeddings(good_file):
    model = runtime.load(good_file, threads=1)
    out = model.encode_image(np.zeros((2, 3, 16, 16), np.float32))
    assert out.shape == (2, 16) and np.isfinite(out).all() and np.abs(out).max() > 0
    assert np.isfinite(model.encode_text(np.array([[1, 5, 49, 0, 0, 0, 0, 0]]))).all()


def _set(path: str, value):
    def edit(meta):
        *parents, last = path.split(".")
        node = meta
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return edit


_DELETE = object()

LIES = [
    ("arch.vision.heads", 2**62, "heads"),
    ("arch.text.heads", 5, "heads"),
    ("arch.text.heads", 0, "heads"),
    ("arch.vision.width", 2**40, "vision.width"),
    ("preprocess.size", 100000, "preprocess.size"),
    ("preprocess.size", 32, "differs from arch.vision.image_size"),
    ("preprocess.std", [0.2, 0.0, 0.3], "std"),
    ("preprocess.mean", [0.5, float("nan"), 0.3], "mean"),
    ("preprocess.interpolation", "cubic-ish", "unsupported preprocessing"),
    ("preprocess", _DELETE, "preprocess metadata is missing"),
    ("arch.text.layers", 0, "text.layers"),
    ("arch.text.layers", 1, "unexpected"),
    ("arch.vision.layers", 3, "missing"),
    ("arch.vision.no_ln_pre", True, "unexpected"),
    ("arch.vision.pool_type", "max", "pool_type"),
    ("arch.text.pool_type", "mean", "pool_type"),
    ("arch.norm_eps", -1, "norm_eps"),
    ("arch.norm_eps", 0, "norm_eps"),
    ("arch.norm_eps", float("nan"), "norm_eps"),
    ("arch.norm_eps", float("inf"), "norm_eps"),
    ("arch.embed_dim", "16", "type int"),
    ("arch.quick_gelu", 1, "type bool"),
    ("arch.text.eos_id", 10**6, "eos_id"),
    ("arch.text.context_length", 10**6, "context_length"),
    ("arch.vision.patch_size", 5, "patch_size"),
    ("arch.vision.patch_size", 4, "has shape"),
    ("arch.text.vocab_size", 51, "shape"),
    ("arch.vision.colour", 3, "unknown keys"),
    ("arch.text", [], "must be objects"),
    ("tensors", {}, "manifest is empty"),
]


@pytest.mark.parametrize(("field", "value", "message"), LIES, ids=[f"{f}={v!r}"[:40] for f, v, _ in LIES])
def test_metadata_that_lies_about_the_tensors_is_refused(good_file, tmp_path, field, value, message):
    mutant = rewrite_meta(good_file, tmp_path / "lie.tclip", _set(field, value))
    with pytest.raises(TclipError, match=message):
        read(mutant)


def test_changed_metadata_without_its_crc_is_refused(good_file, tmp_path):
    data = bytearray(open(good_file, "rb").read())
    i = data.index(b'\\"layers\\": 2')  # inside the escaped tclip JSON string
    data[i + 12] = ord("3")
    (tmp_path / "flip.tclip").write_bytes(bytes(data))
    with pytest.raises(TclipError, match="metadata CRC"):
        read(tmp_path / "flip.tclip")


def test_a_float_tensor_stored_ternary_is_refused(tmp_path):
    model = build()
    model.floats.pop("ln_final.weight")
    model.ternary["ln_final.weight"] = TernaryTensor.from_codes(
        np.ones((24, 1), np.int8), np.ones((1, 1), np.float32), torch_shape=(24,)
    )
    with pytest.raises(TclipError, match="runtime needs it float"):
        read(write(model, tmp_path / "m.tclip"))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_a_float_tensor_is_refused(tmp_path, bad):
    model = build()
    model.floats["visual.positional_embedding"][3, 4] = bad
    with pytest.raises(TclipError, match="visual.positional_embedding.*NaN or infinite"):
        read(write(model, tmp_path / "nan.tclip"))


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_deeply_nested_json_is_the_formats_error(good_file, tmp_path):
    deep_meta = rewrite_meta(
        good_file,
        tmp_path / "deep.tclip",
        lambda m: m.update(provenance=[]),
        lambda text: text.replace('"provenance": []', '"provenance": ' + _deep(100000)),
    )
    with pytest.raises(TclipError, match="not valid JSON"):
        read(deep_meta)
    raw = ('{"a": ' + _deep(100000) + "}").encode()
    (tmp_path / "deep-header.tclip").write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(TclipError, match="not valid JSON"):
        read(tmp_path / "deep-header.tclip")


def expanding_file(path) -> str:
    """A consistent base3 file of rows one code wide: 2bit needs 32 bytes a row, base3 a fifth of a byte."""
    arch = json.loads(json.dumps(ARCH))
    arch["text"].update(vocab_size=1 << 22, width=2, heads=1, mlp_width=2)
    write(build(arch), path, packing="base3", float_dtype="fp16")
    return str(path)


def test_a_small_file_cannot_make_a_big_allocation(tmp_path):
    path = expanding_file(tmp_path / "expand.tclip")
    assert os.path.getsize(path) < 3 << 20
    with pytest.raises(TclipError, match=r"would expand to 134\d{6} bytes"):
        read(path)


# ---------------------------------------------------------------- metadata fuzzing

_POOL = [0, 1, -1, 2, 3, 7, 2**31, 2**63, 10**30, 0.5, -0.0, 1e-300, float("nan"), None, True, "", "avg", [], {}]


def _leaves(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*prefix, key))
    elif isinstance(node, list) and node and not isinstance(node[0], (dict, list)):
        for i in range(len(node)):
            yield (*prefix, i)
        yield prefix
    else:
        yield prefix


def _mutate_meta(meta: dict, rng: np.random.Generator) -> None:
    leaves = [leaf for leaf in _leaves(meta) if leaf and leaf[0] in ("arch", "preprocess", "tensors", "quantization")]
    for _ in range(int(rng.integers(1, 3))):
        *parents, last = leaves[rng.integers(len(leaves))]
        node = meta
        for key in parents:
            node = node[key]
        if rng.random() < 0.1 and isinstance(node, dict):
            node.pop(last, None)
        elif rng.random() < 0.5:
            node[last] = _POOL[rng.integers(len(_POOL))]
        else:  # a plausible neighbour of the right type: the class most likely to load silently wrong
            node[last] = _neighbour(node[last], rng)


def _neighbour(value, rng: np.random.Generator):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return [value + 1, value - 1, value * 2, value // 2, 1][rng.integers(5)]
    if isinstance(value, float):
        return [value * 10, -value, value / 10, 0.0][rng.integers(4)]
    if isinstance(value, str):
        return ["tok", "avg", "argmax", "eos", "first", "last", "bicubic", "squash", "fp16", "base3"][rng.integers(10)]
    return value


def test_fuzzed_metadata_is_refused_or_gives_finite_embeddings(good_file, tmp_path):
    """The byte fuzzer cannot reach this class: every mutant's metadata CRC is right."""
    rng = np.random.default_rng(7)
    images, ids = np.zeros((1, 3, 16, 16), np.float32), np.array([[1, 2, 49, 0, 0, 0, 0, 0]])
    outcomes = {"refused": 0, "loaded": 0}
    for i in range(400):
        mutant = rewrite_meta(good_file, tmp_path / "m.tclip", lambda m: _mutate_meta(m, rng))
        try:
            model = runtime.load(mutant, threads=1)
        except TclipError:
            outcomes["refused"] += 1
            continue
        outcomes["loaded"] += 1
        out = np.concatenate([model.encode_image(images), model.encode_text(ids)])
        assert out.shape == (2, model.arch.embed_dim) and np.isfinite(out).all(), f"mutant {i}"
    assert outcomes["refused"] > 250 and outcomes["loaded"] > 20, outcomes


# ---------------------------------------------------------------- crash classes in a subprocess

CRASHES = {
    "huge heads in the file": "ternaryclip.load(sys.argv[1])",
    "huge image size in the file": "ternaryclip.load(sys.argv[2])",
    "base3 that expands 160x": "ternaryclip.load(sys.argv[3])",
    "deep JSON": "ternaryclip.load(sys.argv[4])",
    "base3_to_2bit size overflow": "_ext.base3_to_2bit(np.zeros(4, np.uint8), 2**62, 2**62)",
    "attention, zero width, huge heads": "kernels.attention(np.zeros((1, 1, 0), np.float32), 2**62, False)",
    "threads 100000": "ternaryclip.load(sys.argv[5], threads=100000)",
    "batch_size -1": "ternaryclip.load(sys.argv[5], batch_size=-1)",
}


@pytest.fixture(scope="module")
def crash_files(good_file, tmp_path_factory):
    d = tmp_path_factory.mktemp("crash")
    deep = d / "deep.tclip"
    raw = ('{"__metadata__": ' + _deep(50000) + "}").encode()
    deep.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return [
        str(rewrite_meta(good_file, d / "heads.tclip", _set("arch.vision.heads", 2**62))),
        str(rewrite_meta(good_file, d / "size.tclip", _set("preprocess.size", 100000))),
        expanding_file(d / "expand.tclip"),
        str(deep),
        str(good_file),
    ]


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


@pytest.mark.parametrize("case", sorted(CRASHES))
def test_crash_class_gives_a_clean_error_in_a_bounded_process(crash_files, case):
    code = (
        "import sys, numpy as np, ternaryclip\n"
        "from ternaryclip import kernels\nfrom ternaryclip.kernels import _ext\n"
        f"try:\n    {CRASHES[case]}\nexcept ValueError as err:\n    print('refused:', err)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *crash_files],
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=_limit_memory,
    )
    assert proc.returncode == 0, f"rc {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.startswith("refused:"), proc.stdout + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- runtime inputs


@pytest.mark.parametrize("threads", [0, -1, 100000, True, 2.5])
def test_bad_thread_counts_are_refused(good_file, threads):
    with pytest.raises(ValueError, match="threads must be an integer between 1 and"):
        runtime.load(good_file, threads=threads)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5])
def test_bad_batch_sizes_are_refused(good_file, batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        runtime.load(good_file, batch_size=batch_size)


@pytest.mark.parametrize("mode", ["fast", "exact", "bf16"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_pixels_are_refused(good_file, mode, bad):
    pixels = np.zeros((2, 3, 16, 16), np.float32)
    pixels[1, 2, 3, 4] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        runtime.load(good_file, mode=mode).encode_image(pixels)


def test_empty_and_extremely_elongated_images_are_clear_errors(good_file):
    model = runtime.load(good_file)
    with pytest.raises(ImageError, match="empty"):
        model.encode_image(Image.new("RGB", (0, 0)))
    with pytest.raises(ImageError, match="too elongated"):
        model.encode_image(Image.new("L", (1, 1_000_000)))


def test_load_threads_is_honoured_in_every_python_thread(good_file):
    wanted = 3 if kernels.get_num_threads() != 3 else 1
    model = runtime.load(good_file, threads=wanted)
    seen = []

    def work():
        model.encode_text(np.array([[1, 2, 49, 0, 0, 0, 0, 0]]))
        seen.append(kernels.get_num_threads())

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert seen == [wanted]


def test_a_16bit_png_gives_one_embedding_whichever_decoder(good_file, tmp_path):
    values = np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)  # mode I;16
    model = runtime.load(good_file, mode="exact")
    training_pixels = model.preprocess(decode_rgb(str(path)))  # the eval / distill path
    assert len(np.unique(training_pixels)) > 50  # scaled to 8 bits, not clipped at 255
    by_path = model.encode_image(str(path))
    assert np.array_equal(by_path, model.encode_image(training_pixels[None]))


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = write(build(), tmp_path / "m.tclip")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode
    assert sorted(os.listdir(tmp_path)) == ["m.tclip"]


def test_a_temp_file_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    """``distill`` killed while writing ``student.tclip``: the next successful write removes the leftover,
    and keeps the temp file of a writer still at work and files that only look alike."""
    import fcntl
    import signal
    import textwrap

    target = tmp_path / "student.tclip"
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            import os, signal
            from ternaryclip.files import atomic_write
            def half(tmp):
                with open(tmp, "wb") as f:
                    f.write(b"half a file")
                os.kill(os.getpid(), signal.SIGKILL)
            atomic_write({str(target)!r}, half)
        """)],
        timeout=60,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    (leftover,) = tmp_path.iterdir()
    assert leftover.name.startswith("student.tclip.") and leftover.suffix == ".tmp"
    busy, alike = tmp_path / "student.tclip.0badc0de.tmp", tmp_path / "student.tclip.backup.tmp"
    busy.write_bytes(b"a writer at work")
    alike.write_bytes(b"the user's")
    held = os.open(busy, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        write(build(), target)  # the .tclip writer that distill's export uses
    finally:
        os.close(held)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, busy.name, alike.name])
    assert read(target) is not None


@pytest.mark.parametrize("context", [0, -1, 10**6, True, 7.5])
def test_tokenizer_context_lengths_out_of_bounds_are_refused(context):
    from ternaryclip.runtime import ClipTokenizer

    with pytest.raises(ValueError, match="context_length must be an integer"):
        ClipTokenizer(context)
    with pytest.raises(ValueError, match="context_length must be an integer"):
        ClipTokenizer(8)(["a cat"], context_length=context)


def test_tokenizer_cache_stays_bounded(monkeypatch):
    from ternaryclip.runtime import tokenizer

    monkeypatch.setattr(tokenizer, "_MAX_CACHED_WORDS", 50)
    tok = tokenizer.ClipTokenizer(8)
    first = tok(["zebra"])
    tok([f"word{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(200)])
    assert len(tok._cache) <= 50
    assert np.array_equal(tok(["zebra"]), first)


@pytest.mark.parametrize("eps", [0.0, -1.0, float("nan"), float("inf")])
def test_layer_norm_kernel_refuses_a_bad_eps(eps):
    x = np.ones((2, 8), np.float32)
    with pytest.raises(ValueError, match="eps must be positive and finite"):
        kernels.layer_norm(x, np.ones(8, np.float32), np.zeros(8, np.float32), eps)


def test_a_model_built_in_memory_is_checked_like_a_file():
    model = build()
    runtime.TernaryCLIP(model)  # consistent: accepted
    del model.floats["visual.ln_post.bias"]
    with pytest.raises(ValueError, match=r"1 missing \['visual.ln_post.bias'\]"):
        runtime.TernaryCLIP(model)
    model = build()
    model.floats["ln_final.bias"][0] = np.nan
    with pytest.raises(ValueError, match="'ln_final.bias' holds NaN"):
        runtime.TernaryCLIP(model)
