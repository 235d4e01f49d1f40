"""Tar shards: `robust-mmr data shard` writes a canonical dataset, ShardReader streams it back whole, split
across ranks and DataLoader workers with every sample read exactly once."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
from torch.utils.data import DataLoader

from robust_mmr.cli.main import main
from robust_mmr.data.images import load_image, read_image
from robust_mmr.data.shards import ShardReader, write_shards
from robust_mmr.errors import InputError
from robust_mmr.training.screening import screen_records


@pytest.fixture(scope="module")
def shards(synth_dir, tmp_path_factory):
    """The synth set's train split in shards of 5 samples (9 shards), written by the CLI."""
    out = tmp_path_factory.mktemp("shards")
    assert main(["data", "shard", str(synth_dir), "--out", str(out), "--samples-per-shard", "5"]) == 0
    return out


def _keep(sample):
    return sample


def test_round_trip_gives_back_every_record_and_image(synth_dir, shards):
    records, _ = screen_records(synth_dir, "train", "skip")
    sizes = json.loads((shards / "sizes.json").read_text())
    assert sum(sizes.values()) == len(records) and len(sizes) == -(-len(records) // 5)
    assert all(n == 5 for n in list(sizes.values())[:-1])
    with tarfile.open(shards / "shard-000000.tar") as tar:
        names = tar.getnames()
        assert names[:3] == ["000000000.png", "000000000.txt", "000000000.json"]
        assert tar.extractfile(names[0]).read() == (synth_dir / records[0].image).read_bytes()  # bytes as stored
        assert tar.extractfile(names[1]).read().decode() == records[0].text
    samples = list(ShardReader(shards))
    assert [s.record for s in samples] == records
    assert [s.key for s in samples] == [f"{i:09d}" for i in range(len(records))]
    for sample in samples:
        assert sample.problem is None and np.array_equal(sample.image, load_image(synth_dir / sample.record.image))


def test_two_ranks_two_workers_read_every_sample_exactly_once(shards):
    total = json.loads((shards / "shards.json").read_text())["samples"]
    for seed in (None, 3):
        keys_by_rank = []
        for rank in range(2):
            reader = ShardReader(shards, rank=rank, world_size=2, seed=seed)
            reader.set_epoch(1)
            loader = DataLoader(reader, batch_size=None, num_workers=2, collate_fn=_keep)
            keys_by_rank.append([s.key for s in loader])
        every = [k for keys in keys_by_rank for k in keys]
        assert len(every) == total and set(every) == {f"{i:09d}" for i in range(total)}  # no duplicate, no loss
        assert all(keys_by_rank)  # 9 shards over 4 consumers: both ranks get some


def test_consumers_get_whole_shards_and_the_shuffle_follows_the_epoch(shards):
    def plan(rank: int, epoch: int, seed: int | None) -> list[str]:
        reader = ShardReader(shards, rank=rank, world_size=4, seed=seed)
        reader.set_epoch(epoch)
        return [p.name for p in reader.my_shards()]

    fixed = [plan(r, 0, None) for r in range(4)]
    assert fixed[0] == ["shard-000000.tar", "shard-000004.tar", "shard-000008.tar"]
    for epoch in (0, 1):
        shuffled = [plan(r, epoch, 5) for r in range(4)]
        assert sorted(sum(shuffled, [])) == sorted(sum(fixed, []))
    assert [plan(r, 0, 5) for r in range(4)] != [plan(r, 1, 5) for r in range(4)]
    with pytest.raises(InputError, match="rank 2"):
        ShardReader(shards, rank=2, world_size=2)


def test_shards_are_reproducible_and_refuse_to_overwrite(synth_dir, shards, tmp_path):
    again = tmp_path / "again"
    write_shards(synth_dir, again, samples_per_shard=5)
    for name in json.loads((shards / "sizes.json").read_text()):
        assert (again / name).read_bytes() == (shards / name).read_bytes()
    with pytest.raises(InputError, match="already holds shards"):
        write_shards(synth_dir, again, samples_per_shard=5)


def test_dicom_is_converted_and_bad_records_are_listed(tmp_path):
    from pydicom.data import get_testdata_file

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "ct.dcm").write_bytes(open(get_testdata_file("CT_small.dcm"), "rb").read())
    (tmp_path / "images" / "cut.dcm").write_bytes(open(get_testdata_file("MR_truncated.dcm"), "rb").read())
    rows = [("ct", "images/ct.dcm"), ("cut", "images/cut.dcm"), ("gone", "images/gone.png")]
    (tmp_path / "image_text.jsonl").write_text("".join(
        json.dumps({"id": i, "image": f, "text": "ct chest", "split": "train"}) + "\n" for i, f in rows))
    card = write_shards(tmp_path, tmp_path / "out", samples_per_shard=2)
    assert card["samples"] == 1
    assert {s["id"]: s["reason"] for s in card["skipped"]} == {"cut": "truncated image", "gone": "missing image file"}
    (sample,) = ShardReader(tmp_path / "out")
    assert sample.record.id == "ct" and np.array_equal(sample.image, read_image(tmp_path / "images" / "ct.dcm")[0])
