"""Corrupt, truncated or foreign files raise TclipError (never another exception, never silent damage)."""

import json
import os
import struct
import time
import zlib

import numpy as np
import pytest

import ternaryclip
from ternaryclip.pack import TclipError, read
from ternaryclip.quant import TernaryConfig, ternarize_


@pytest.fixture
def small_file(tiny_open_clip, tmp_path):
    ternarize_(tiny_open_clip, TernaryConfig(embedding=True))
    return ternaryclip.save(tiny_open_clip, tmp_path / "small.tclip", packing="2bit")


def _same_content(a, b) -> bool:
    if set(a.ternary) != set(b.ternary) or set(a.floats) != set(b.floats) or a.meta["arch"] != b.meta["arch"]:
        return False
    return all(
        np.array_equal(a.ternary[n].packed, b.ternary[n].packed)
        and np.array_equal(a.ternary[n].scales, b.ternary[n].scales)
        for n in a.ternary
    ) and all(np.array_equal(a.floats[n], b.floats[n]) for n in a.floats)


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    kind = rng.integers(6)
    if kind == 0:  # a few bit flips anywhere
        for _ in range(rng.integers(1, 5)):
            i = rng.integers(len(buf))
            buf[i] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # truncation
        del buf[rng.integers(len(buf)) :]
    elif kind == 2:  # bytes overwritten inside the JSON header
        for _ in range(rng.integers(1, 4)):
            buf[rng.integers(8, header_end)] = int(rng.integers(256))
    elif kind == 3:  # a wrong header length
        lengths = [0, 1, header_end - 9, header_end + 7, 2**40, 2**64 - 1]
        buf[:8] = struct.pack("<Q", lengths[rng.integers(len(lengths))])
    elif kind == 4:  # a range of zeros in the data
        i, length = rng.integers(header_end, len(buf)), int(rng.integers(1, 64))
        buf[i : i + length] = bytes(len(buf[i : i + length]))
    else:  # one bit flip in the data section (the weights)
        i = rng.integers(header_end, len(buf))
        buf[i] ^= 1 << int(rng.integers(8))
    return bytes(buf)


def test_fuzzed_files_raise_tclip_error_or_load_identically(small_file, tmp_path):
    original = read(small_file)
    data = small_file.read_bytes()
    rng = np.random.default_rng(1234)
    target = tmp_path / "mutant.tclip"
    outcomes = {"error": 0, "identical": 0}
    start = time.perf_counter()
    for i in range(1200):
        mutant = _mutate(data, rng)
        target.write_bytes(mutant)
        try:
            loaded = read(target)
        except TclipError:
            outcomes["error"] += 1
            continue
        assert _same_content(loaded, original), f"mutation {i} loaded silently with different content"
        outcomes["identical"] += 1
    assert time.perf_counter() - start < 60
    assert outcomes["error"] > 1000  # nearly every mutation is caught


def test_clear_errors_for_foreign_and_broken_files(small_file, tmp_path):
    with pytest.raises(TclipError, match="no such file"):
        read(tmp_path / "missing.tclip")
    empty = tmp_path / "empty.tclip"
    empty.write_bytes(b"")
    with pytest.raises(TclipError):
        read(empty)
    from safetensors.numpy import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": np.zeros((2, 2), np.float32)}, plain)
    with pytest.raises(TclipError, match="plain safetensors"):
        read(plain)
    huge = tmp_path / "huge.tclip"
    huge.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(TclipError, match="header length"):
        read(huge)


def _rewrite_meta(path, out, edit):
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["tclip"])
    edit(meta)
    header["__metadata__"]["tclip"] = text = json.dumps(meta)
    # The metadata CRC is recomputed: a consistent file whose meaning changed.
    header["__metadata__"]["tclip_crc32"] = str(zlib.crc32(text.encode()))
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    out.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])
    return out


def test_newer_version_is_refused_with_a_clear_message(small_file, tmp_path):
    newer = _rewrite_meta(small_file, tmp_path / "v4.tclip", lambda m: m.update(version=4))  # 3 carries blobs
    with pytest.raises(TclipError, match="version 4 is not supported"):
        read(newer)


def _drop_meta_crc(path, out):
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    del header["__metadata__"]["tclip_crc32"]
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    out.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])
    return out


def test_version_1_files_without_a_metadata_crc_still_read(small_file, tmp_path):
    v1 = _drop_meta_crc(
        _rewrite_meta(small_file, tmp_path / "v1.tclip", lambda m: m.update(version=1)), tmp_path / "a.tclip"
    )
    old, new = read(v1), read(small_file)
    assert old.arch == new.arch
    for name, t in new.ternary.items():
        np.testing.assert_array_equal(old.ternary[name].packed, t.packed)


def test_a_version_2_file_without_its_metadata_crc_is_refused(small_file, tmp_path):
    with pytest.raises(TclipError, match="no metadata CRC"):
        read(_drop_meta_crc(small_file, tmp_path / "nocrc.tclip"))


def test_manifest_shape_lies_are_caught_before_use(small_file, tmp_path):
    def lie(meta):
        meta["tensors"]["visual.conv1.weight"]["shape"] = [10**9, 10**9]

    with pytest.raises(TclipError, match="visual.conv1.weight"):
        read(_rewrite_meta(small_file, tmp_path / "lie.tclip", lie))


def test_interrupted_save_leaves_no_file_under_the_final_name(tiny_open_clip, tmp_path, monkeypatch):
    import safetensors.numpy

    ternarize_(tiny_open_clip, TernaryConfig())
    final = tmp_path / "model.tclip"
    ternaryclip.save(tiny_open_clip, final)
    before = final.read_bytes()

    def broken_save(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.numpy, "save_file", broken_save)
    with pytest.raises(KeyboardInterrupt):
        ternaryclip.save(tiny_open_clip, final, packing="base3")
    assert final.read_bytes() == before  # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["model.tclip"]  # no temp file left behind


def test_reading_needs_no_torch(small_file):
    import subprocess
    import sys

    code = (
        "import sys, ternaryclip.pack as p, ternaryclip.pack.info as i; m = p.read(sys.argv[1]); "
        "i.describe(sys.argv[1]); assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code, str(small_file)], check=True)
