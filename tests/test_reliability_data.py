"""Bad training input (RELIABILITY.md, case 2): every case has a stated outcome and nothing is dropped silently."""

from __future__ import annotations

import io
import json
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robust_mmr.cli.main import main
from robust_mmr.config import load_config
from robust_mmr.data.images import ImageReadError, check_image
from robust_mmr.errors import InputError
from robust_mmr.model.text import build_tokenizer
from robust_mmr.training.data import ImageTextDataset, PretrainCollator

SIZE = 32


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares width x height (8-bit grey) with one tiny IDAT: a few hundred bytes on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _grey(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)


@pytest.fixture()
def bad_dir(tmp_path) -> Path:
    """Four good pairs plus one of every bad case; ids name the case."""
    images = tmp_path / "images"
    images.mkdir()
    lines: list[bytes] = []

    def add(rid: str, image: str, text: str = "chest x-ray, no acute findings") -> None:
        lines.append(json.dumps({"id": rid, "image": image, "text": text, "split": "train"}).encode() + b"\n")

    for i in range(4):
        Image.fromarray(_grey(i)).save(images / f"good{i}.png")
        add(f"good{i}", f"images/good{i}.png")
    rgba = np.dstack([_grey(10)] * 3 + [np.zeros((SIZE, SIZE), np.uint8)])  # fully transparent alpha
    Image.fromarray(rgba, mode="RGBA").save(images / "alpha.png")
    add("alpha", "images/alpha.png")
    Image.fromarray(np.full((SIZE, SIZE), 40000, np.uint16)).save(images / "deep.png")  # 16-bit grey
    add("png16", "images/deep.png")
    buf = io.BytesIO()
    Image.fromarray(_grey(11)).save(buf, format="JPEG", quality=90)
    (images / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    add("truncated", "images/cut.jpg")
    add("long-caption", "images/good0.png", "word " * 10_000)  # 50,000 characters
    (images / "empty.png").write_bytes(b"")
    add("zero-bytes", "images/empty.png")
    _png_header_only(images / "huge.png", 20_000, 20_000)
    add("huge", "images/huge.png")
    add("missing", "images/nowhere.png")
    add("escape", "../../etc/passwd")
    add("good1", "images/good2.png")  # a second record with an existing id
    add("empty-caption", "images/good0.png", "")
    lines.append(b'{"id": "latin1", "image": "images/good0.png", "text": "r\xf6ntgen", "split": "train"}\n')
    (tmp_path / "image_text.jsonl").write_bytes(b"".join(lines))
    return tmp_path


SCREENED = {  # skipped before training, from the manifest and the image headers
    "zero-bytes": "empty image file", "huge": "image too large", "missing": "missing image file",
    "escape": "path outside dataset", "good1": "duplicate id", "empty-caption": "empty text", "line 15": "not UTF-8",
}


def test_screening_skips_each_bad_record_with_its_reason(bad_dir):
    data = ImageTextDataset(bad_dir, "train", SIZE, 1)
    assert {s.id: s.reason for s in data.skipped} == SCREENED
    kept = [r.id for r in data.records]
    assert kept == ["good0", "good1", "good2", "good3", "alpha", "png16", "truncated", "long-caption"]
    assert data.records[1].image == "images/good1.png"  # the first of the duplicate ids is the one kept
    assert all(s.detail for s in data.skipped)


def test_huge_image_is_refused_from_its_header(tmp_path):
    for side in (20_000, 12_000):  # above PIL's hard limit, and between its warning and hard limits
        path = tmp_path / f"huge{side}.png"
        _png_header_only(path, side, side)
        start = time.perf_counter()
        with pytest.raises(ImageReadError) as err:
            check_image(path)  # a full decode of 20,000^2 would need 400 MB; the header says no first
        assert err.value.reason == "image too large" and time.perf_counter() - start < 1.0


def test_accepted_odd_images_become_correct_tensors(bad_dir):
    data = ImageTextDataset(bad_dir, "train", SIZE, 1)
    by_id = {r.id: i for i, r in enumerate(data.records)}
    alpha = data[by_id["alpha"]]
    expected = torch.from_numpy(_grey(10).astype(np.float32) / 255)[None]
    assert alpha.problem is None and torch.allclose(alpha.pixels, expected, atol=1e-6)  # alpha ignored, not mixed in
    deep = data[by_id["png16"]]
    assert deep.problem is None and torch.allclose(deep.pixels, torch.full_like(deep.pixels, 40000 / 65535))


def test_truncated_jpeg_is_left_out_of_its_batch_and_listed(bad_dir):
    data = ImageTextDataset(bad_dir, "train", SIZE, 1)
    by_id = {r.id: i for i, r in enumerate(data.records)}
    cfg = load_config("tiny", ["model.max_text_length=16"])
    collate = PretrainCollator(build_tokenizer(cfg.model.text), cfg.model.max_text_length, cfg.objective, seed=0)
    items = [data[(by_id[i], 3)] for i in ("truncated", "good0", "long-caption")]
    assert items[0].problem.reason == "truncated image" and items[0].pixels is None
    start = time.perf_counter()
    batch = collate(items)
    assert time.perf_counter() - start < 5.0  # the 50,000-character caption is cheap: it is truncated
    assert batch.pixels.shape == (2, 1, SIZE, SIZE) and batch.input_ids.shape == (2, 16)
    assert batch.view.input_ids.shape[1] <= 16
    assert [s["id"] for s in batch.skipped] == ["truncated"]
    strict = ImageTextDataset(bad_dir, "train", SIZE, 1, on_bad_sample="skip")
    strict.on_bad_sample = "fail"
    with pytest.raises(InputError, match="truncated"):
        strict[by_id["truncated"]]


def test_nan_pixels_in_a_dicom_are_refused(tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    pixels = ds.pixel_array.astype(np.float32)
    pixels[10:20, 10:20] = np.nan
    del ds.PixelData
    ds.FloatPixelData = pixels.tobytes()  # float pixels: the only way a DICOM can hold NaN
    ds.BitsAllocated = 32
    for tag in ("BitsStored", "HighBit", "PixelRepresentation", "RescaleSlope", "RescaleIntercept"):
        delattr(ds, tag)
    (tmp_path / "images").mkdir()
    ds.save_as(tmp_path / "images" / "nan.dcm")
    Image.fromarray(_grey(0)).save(tmp_path / "images" / "ok.png")
    (tmp_path / "image_text.jsonl").write_text(
        "".join(json.dumps({"id": i, "image": f"images/{f}", "text": "ct", "split": "train"}) + "\n"
                for i, f in (("nan", "nan.dcm"), ("ok", "ok.png"))))
    data = ImageTextDataset(tmp_path, "train", SIZE, 1)
    sample = data[0]
    assert sample.pixels is None and sample.problem.reason == "non-finite pixels"
    assert data[1].problem is None


def _cli(data: Path, out: Path, *extra: str) -> list[str]:
    return ["pretrain", "--config", "tiny", "--method", "mmr-aug", "--data", str(data), "--out", str(out),
            f"model.image_size={SIZE}", "model.vision.layers=1", "model.text.layers=1", "model.fusion.layers=1",
            "model.decoder.layers=1", "model.max_text_length=16", "train.batch_size=2", "train.max_steps=4",
            "train.num_workers=0", "train.checkpoint_every=0", *extra]


def test_training_skips_bad_samples_and_lists_every_one(bad_dir, tmp_path, capsys):
    assert main(_cli(bad_dir, tmp_path / "run")) == 0  # 8 usable records, batch 2: one epoch covers all
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["train_pairs"] == 8
    assert {s["id"]: s["reason"] for s in summary["skipped"]} == {**SCREENED, "truncated": "truncated image"}
    assert summary["skipped_counts"]["truncated image"] == 1 and sum(summary["skipped_counts"].values()) == 8
    out = capsys.readouterr().out
    assert "8 samples skipped" in out and "path outside dataset" in out and "escape" in out


def test_on_bad_sample_fail_stops_before_training(bad_dir, tmp_path, capsys):
    assert main(_cli(bad_dir, tmp_path / "run", "--on-bad-sample", "fail")) == 2
    err = capsys.readouterr().err
    assert "bad sample zero-bytes: empty image file" in err
    assert not (tmp_path / "run" / "checkpoints").exists()
