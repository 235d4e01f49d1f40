"""DICOM input on pydicom's bundled real test files: rescale, window, VOI LUT, MONOCHROME1, recorded info."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from robust_mmr.data.images import ImageReadError, check_image, load_image, read_image
from robust_mmr.data.validate import validate_dataset


def test_ct_rescale_then_min_max_is_recorded():
    path = get_testdata_file("CT_small.dcm")
    raw = pydicom.dcmread(path).pixel_array.astype(np.float64)
    array, info = read_image(path)
    assert (info["modality_lut"], info["rescale_intercept"], info["voi"]) == ("rescale", -1024.0, "min-max")
    hu = raw - 1024.0
    assert (info["window_min"], info["window_max"]) == (hu.min(), hu.max())
    expected = np.rint((hu - hu.min()) / (hu.max() - hu.min()) * 65535)
    assert array.dtype == np.uint16 and np.array_equal(array, expected.astype(np.uint16))
    assert np.array_equal(load_image(path), array)  # the array-only API gives the same pixels


def test_mr_window_centre_width():
    path = get_testdata_file("MR_small.dcm")
    raw = pydicom.dcmread(path).pixel_array.astype(np.float64)
    array, info = read_image(path)
    assert (info["voi"], info["window_center"], info["window_width"]) == ("window", 600.0, 1600.0)
    low, high = raw <= 600 - 0.5 - 799.5, raw > 600 - 0.5 + 799.5
    assert np.all(array[low] == 0) and np.all(array[high] == 65535)
    inside = ~(low | high)
    assert np.all(np.diff(array[inside][np.argsort(raw[inside], kind="stable")].astype(int)) >= 0)


def test_monochrome1_is_inverted(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "inv.dcm")
    normal, _ = read_image(get_testdata_file("MR_small.dcm"))
    inverted, info = read_image(tmp_path / "inv.dcm")
    assert info["inverted"] is True and info["photometric"] == "MONOCHROME1"
    assert np.array_equal(inverted.astype(int), 65535 - normal.astype(int))


def test_voi_lut_sequence_wins_over_window(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 8]  # 4096 entries from stored value 0, 8-bit output
    item.add_new(0x00283006, "US", [min(255, v // 8) for v in range(4096)])  # LUT Data
    ds.VOILUTSequence = Sequence([item])
    ds.save_as(tmp_path / "lut.dcm")
    raw = ds.pixel_array.astype(np.int64)
    array, info = read_image(tmp_path / "lut.dcm")
    assert (info["voi"], info["voi_lut_bits"]) == ("lut", 8)
    expected = np.rint(np.minimum(255, raw // 8) * (65535 / 255)).astype(np.uint16)
    assert np.array_equal(array, expected)


def test_colour_and_broken_files(tmp_path):
    rgb, info = read_image(get_testdata_file("SC_rgb_small_odd.dcm"))
    assert rgb.shape == (3, 3, 3) and info["colour"] == "stored RGB"
    with pytest.raises(ImageReadError) as err:
        check_image(__import__("pathlib").Path(get_testdata_file("MR_truncated.dcm")))
    assert err.value.reason == "truncated image"
    (tmp_path / "junk.dcm").write_bytes(b"not a dicom file at all")
    with pytest.raises(ImageReadError, match="unreadable image"):
        check_image(tmp_path / "junk.dcm")


def test_validate_accepts_dicom_records(tmp_path):
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "ct.dcm").write_bytes(open(get_testdata_file("CT_small.dcm"), "rb").read())
    (tmp_path / "scans" / "cut.dcm").write_bytes(open(get_testdata_file("MR_truncated.dcm"), "rb").read())
    lines = [{"id": i, "image": f"scans/{i}.dcm", "text": "axial ct", "split": "train", "meta": {}}
             for i in ("ct", "cut")]
    (tmp_path / "image_text.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    report = validate_dataset(tmp_path)
    assert (report.kept, report.rejected) == (1, 1)
    assert report.problems[0].record_id == "cut" and report.problems[0].reason == "truncated image"
