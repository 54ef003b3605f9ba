"""Distillation data: CSV/TSV, image folders, webdataset shards; broken samples are counted, not fatal."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from ternaryclip.data.images import decode_rgb
from ternaryclip.distill.data import BatchStream, DataError, ListSource, open_source
from ternaryclip.runtime.preprocess import Preprocess
from ternaryclip.runtime.tokenizer import ClipTokenizer

PRE = Preprocess(size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def _image(colour, mode="RGB", size=(40, 48)) -> Image.Image:
    return Image.new("RGB", size, colour).convert(mode)


def _write_images(folder):
    """Good images in several modes, one truncated file, one 16-bit grey image."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i, mode in enumerate(["RGB", "RGBA", "L", "P", "CMYK"]):
        path = folder / f"img{i}.{'jpg' if mode in ('RGB', 'L', 'CMYK') else 'png'}"
        _image((40 * i, 200 - 30 * i, 90), mode).save(path)
        files[path.name] = f"caption {i}"
    sixteen = folder / "deep.png"
    Image.fromarray(np.full((30, 30), 40000, np.uint16)).save(sixteen)
    files[sixteen.name] = "a 16-bit grey square"
    broken = folder / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0not really a jpeg")
    files[broken.name] = "broken"
    return files


def _stream(source, batch_size=4, **kw) -> BatchStream:
    return BatchStream(source, PRE, ClipTokenizer(24), batch_size, workers=2, **kw)


def test_decode_converts_modes_and_scales_16_bit(tmp_path):
    files = _write_images(tmp_path)
    deep = decode_rgb(str(tmp_path / "deep.png"))
    assert deep.mode == "L" and deep.getpixel((0, 0)) == round(40000 / 65535 * 255)
    assert decode_rgb(str(tmp_path / "img4.jpg")).mode == "RGB"  # CMYK
    with pytest.raises(ValueError, match="cannot decode"):
        decode_rgb(str(tmp_path / "broken.jpg"))
    assert len(files) == 7


def test_csv_skips_broken_images_and_empty_captions(tmp_path):
    files = _write_images(tmp_path / "imgs")
    rows = ["filepath\ttitle"] + [f"imgs/{name}\t{caption}" for name, caption in files.items()] + ["imgs/img0.jpg\t  "]
    (tmp_path / "pairs.tsv").write_text("\n".join(rows) + "\n")
    source = open_source(str(tmp_path / "pairs.tsv"), seed=0)
    assert isinstance(source, ListSource) and len(source.items) == 8
    stream = _stream(source, batch_size=6)
    batch = stream.next_batch()
    assert batch.pixels.shape == (6, 3, 32, 32) and batch.ids.shape == (6, 24)
    assert stream.position == 6 + stream.skipped.total
    stream.next_batch()  # past the end of the first epoch: every bad record has been met once
    assert stream.skipped.counts["cannot decode"] >= 1 and stream.skipped.counts["empty caption"] >= 1
    assert stream.position == 12 + stream.skipped.total
    # Pixels equal the runtime's preprocessing of the same file.
    order = np.random.default_rng([0, 0]).permutation(8)
    first_good = next(
        source.items[i] for i in order if not source.items[i][0].endswith("broken.jpg") and source.items[i][1].strip()
    )
    np.testing.assert_allclose(batch.pixels[0], PRE(decode_rgb(first_good[0])), atol=1e-6)


def test_csv_without_the_named_columns(tmp_path):
    (tmp_path / "a.csv").write_text("path,text\nx.jpg,hello\n")
    with pytest.raises(DataError, match="needs columns 'filepath' and 'title'"):
        open_source(str(tmp_path / "a.csv"))
    assert len(open_source(str(tmp_path / "a.csv"), image_key="path", caption_key="text").items) == 1


def test_image_folder_with_sidecars_and_with_captions_txt(tmp_path):
    _write_images(tmp_path / "side")
    for path in (tmp_path / "side").iterdir():
        if path.suffix != ".txt":
            path.with_suffix(".txt").write_text(f"a picture called {path.stem}")
    source = open_source(str(tmp_path / "side"))
    assert len(source.items) == 7 and all(c.startswith("a picture called") for _, c in source.items)
    listed = tmp_path / "listed"
    _write_images(listed)
    (listed / "captions.txt").write_text("img0.jpg\tfirst\nimg1.png\tsecond\n")
    assert [c for _, c in open_source(str(listed)).items] == ["first", "second"]
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="no image-caption pairs"):
        open_source(str(tmp_path / "nothing"))


def _shard(path, samples):
    with tarfile.open(path, "w") as tar:
        for key, files in samples:
            for ext, data in files.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def _jpeg(colour) -> bytes:
    out = io.BytesIO()
    _image(colour).save(out, "JPEG")
    return out.getvalue()


def test_webdataset_shards_skip_bad_samples_and_resume(tmp_path):
    samples = [(f"s{i:03d}", {"jpg": _jpeg((10 * i, 0, 0)), "txt": f"caption {i}".encode()}) for i in range(10)]
    samples[3] = ("s003", {"jpg": b"garbage", "txt": b"broken image"})
    samples[5] = ("s005", {"jpg": _jpeg((1, 2, 3)), "txt": b""})
    _shard(tmp_path / "shard-000.tar", samples[:6])
    _shard(tmp_path / "shard-001.tar", samples[6:])
    spec = str(tmp_path / "shard-{000..001}.tar")
    stream = _stream(open_source(spec), batch_size=4)
    b1, b2 = stream.next_batch(), stream.next_batch()
    assert stream.skipped.counts == {"cannot decode": 1, "empty caption": 1}
    assert stream.position == 10
    resumed = _stream(open_source(spec), batch_size=4, start=6)
    np.testing.assert_array_equal(resumed.next_batch().ids, b2.ids)
    np.testing.assert_array_equal(
        open_source(str(tmp_path)).files, [str(tmp_path / "shard-000.tar"), str(tmp_path / "shard-001.tar")]
    )
    assert b1.pixels.shape == (4, 3, 32, 32)


def test_ranks_split_the_global_batch(tmp_path):
    """Two ranks' rows, stacked, are the one-process batch (the agreement step is a sum over ranks)."""
    files = _write_images(tmp_path / "imgs")
    (tmp_path / "a.csv").write_text("filepath,title\n" + "".join(f"imgs/{n},{c}\n" for n, c in files.items()) * 3)
    single = _stream(open_source(str(tmp_path / "a.csv")), batch_size=6).next_batch()
    streams = [_stream(open_source(str(tmp_path / "a.csv")), batch_size=6, rank=r, world_size=2) for r in range(2)]
    pending = {}

    def agree_for(rank):
        def agree(codes):  # each rank contributes its share; emulate all_reduce(sum) across the two
            pending[rank] = codes
            other = 1 - rank
            if other not in pending:
                other_stream = streams[other]
                other_stream.agree = agree_for(other)
                pending["rows", other] = other_stream.next_batch()
            return pending[0] + pending[1]

        return agree

    streams[0].agree = agree_for(0)
    rank0 = streams[0].next_batch()
    rank1 = pending["rows", 1]
    np.testing.assert_array_equal(np.concatenate([rank0.ids, rank1.ids]), single.ids)
    np.testing.assert_allclose(np.concatenate([rank0.pixels, rank1.pixels]), single.pixels)


def test_synthetic_stream_is_deterministic():
    a = _stream(open_source("synthetic:3", image_size=32), batch_size=5)
    b = _stream(open_source("synthetic:3", image_size=32), batch_size=5, start=5)
    a.next_batch()
    np.testing.assert_array_equal(a.next_batch().pixels, b.next_batch().pixels)


# ---------------------------------------------------------------- unusable sources and data specs


def _csv(tmp_path, rows) -> str:
    path = tmp_path / "pairs.csv"
    path.write_text("filepath,title\n" + "".join(f"{image},{caption}\n" for image, caption in rows))
    return str(path)


def test_all_corrupt_images_stop_with_counts(tmp_path):
    for i in range(3):
        (tmp_path / f"bad{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    stream = _stream(open_source(_csv(tmp_path, [(f"bad{i}.jpg", f"caption {i}") for i in range(3)])))
    with pytest.raises(DataError, match=r"6 records in a row were unusable \(6 cannot decode\)"):
        stream.next_batch()  # 3 pairs: two epochs (6 records) without one usable record prove it


def test_all_empty_captions_stop_with_counts(tmp_path):
    _image((1, 2, 3)).save(tmp_path / "ok.png")
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    stream = _stream(open_source(_csv(tmp_path, [("ok.png", " "), ("bad.jpg", "a caption"), ("ok.png", "")])))
    with pytest.raises(DataError, match=r"unusable \(2 cannot decode, 4 empty caption\)"):
        stream.next_batch()


def test_unusable_records_are_bounded_on_endless_shards(tmp_path):
    _shard(tmp_path / "s.tar", [(f"k{i}", {"jpg": b"broken", "txt": b"words"}) for i in range(3)])
    stream = _stream(open_source(str(tmp_path / "s.tar")), max_unusable=25)
    with pytest.raises(DataError, match=r"25 records in a row were unusable \(25 cannot decode\)"):
        stream.next_batch()
    assert stream.skipped.counts == {"cannot decode": 25}


def test_usable_records_reset_the_unusable_run(tmp_path):
    """A source with a few good records among many bad ones trains: only a run without any counts."""
    _image((9, 9, 9)).save(tmp_path / "ok.png")
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    rows = [("bad.jpg", "x")] * 4 + [("ok.png", "good")]
    stream = _stream(
        open_source(_csv(tmp_path, rows)), max_unusable=9
    )  # at most 8 in a row: 4 ending an epoch, 4 opening the next
    for _ in range(3):
        assert stream.next_batch().pixels.shape == (4, 3, 32, 32)
    assert stream.skipped.counts["cannot decode"] == stream.position - 12


def test_too_large_is_its_own_reason(tmp_path, monkeypatch):
    import ternaryclip.data.images as images

    _image((1, 1, 1), size=(20, 20)).save(tmp_path / "big.png")
    _image((2, 2, 2), size=(8, 8)).save(tmp_path / "small.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    stream = _stream(open_source(_csv(tmp_path, [("big.png", "big"), ("small.png", "small")])), batch_size=2)
    stream.next_batch()
    assert stream.skipped.counts["too large"] >= 1 and "cannot decode" not in stream.skipped.counts


SHELL_SPECS = [
    "pipe:touch {marker}",
    "wds:pipe:touch {marker}",
    "{shard},pipe:touch {marker}",  # brace-expanded below
    "{{{shard},pipe:touch {marker}}}",
    "{{{shard},pipe:touch {marker};#://}}",
    "csv:pipe:touch {marker}",
    "http://127.0.0.1:9/{{a,b}}.tar",
]


@pytest.mark.parametrize("template", SHELL_SPECS)
def test_no_data_spec_reaches_a_shell(tmp_path, monkeypatch, template):
    """Specs that would create ``marker`` if any part of them went through a shell."""
    monkeypatch.chdir(tmp_path)
    _shard(tmp_path / "good.tar", [("k0", {"jpg": _jpeg((5, 5, 5)), "txt": b"fine"})])
    marker = tmp_path / "marker"
    spec = template.format(shard=tmp_path / "good.tar", marker=marker)
    with pytest.raises(DataError):
        _stream(open_source(spec)).next_batch()
    assert not marker.exists()


def test_no_data_spec_in_a_config_reaches_a_shell(tiny_teacher_files, tmp_path):
    """The same refusal through ``--config`` and ``--data`` of the CLI, before any model loads."""
    import subprocess
    import sys

    _shard(tmp_path / "good.tar", [("k0", {"jpg": _jpeg((5, 5, 5)), "txt": b"fine"})])
    marker = tmp_path / "marker"
    spec = f"{{{tmp_path / 'good.tar'},pipe:touch {marker};#://}}"
    (tmp_path / "c.json").write_text(json.dumps({"data": spec, "steps": 1, "batch_size": 2}))
    config, weights = tiny_teacher_files
    common = ["--teacher", str(config), "--teacher-pretrained", str(weights), "--out", str(tmp_path / "run")]
    for extra in (["--config", str(tmp_path / "c.json")], ["--data", spec]):
        result = subprocess.run(
            [sys.executable, "-m", "ternaryclip", "distill", *common, *extra],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert result.returncode != 0 and "not a local path" in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_cli_on_a_folder_of_corrupt_images_stops_with_one_line(tiny_teacher_files, tmp_path):
    """The loop that never ended: a bounded subprocess must end by itself with the counts.

    ``--workers 0`` (decode on the training thread, DataLoader's meaning) is accepted on the way."""
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        (data / f"{i}.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
        (data / f"{i}.txt").write_text(f"caption {i}")
    config, weights = tiny_teacher_files
    result = subprocess.run(
        [sys.executable, "-m", "ternaryclip", "distill", "--teacher", str(config), "--teacher-pretrained",
         str(weights), "--data", str(data), "--steps", "1", "--batch-size", "2", "--threads", "1",
         "--workers", "0", "--no-progress", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "8 records in a row were unusable (8 cannot decode)" in result.stderr.strip().splitlines()[-1]


def test_workers_0_decodes_on_the_calling_thread_with_the_same_batches(tmp_path, monkeypatch):
    import threading

    from ternaryclip.distill import batches

    files = _write_images(tmp_path)
    source = open_source(_csv(tmp_path, [(tmp_path / name, caption) for name, caption in files.items()]), seed=3)
    threads, decode = set(), batches.model_pixels
    monkeypatch.setattr(batches, "model_pixels", lambda *a: threads.add(threading.get_ident()) or decode(*a))
    alone = BatchStream(source, PRE, ClipTokenizer(24), 4, workers=0)
    pooled = BatchStream(source, PRE, ClipTokenizer(24), 4, workers=2)
    for _ in range(3):
        a, b = alone.next_batch(), pooled.next_batch()
        assert np.array_equal(a.pixels, b.pixels) and np.array_equal(a.ids, b.ids)
    assert alone.skipped.counts == pooled.skipped.counts and alone.skipped.counts["cannot decode"] >= 1
    assert threading.get_ident() in threads and len(threads) >= 2  # the caller's thread, and the pool's
