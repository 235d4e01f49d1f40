"""Tar shards for corpora too large to open file by file: written from a canonical dataset, read as a stream.

The layout is the WebDataset one that img2dataset writes and open_clip reads: ``shard-000000.tar``,
``shard-000001.tar``, ... each holding, per sample, three members with one key::

    000000000.jpg    the image bytes as stored (``.png`` for PNG; other formats re-encoded as PNG)
    000000000.txt    the caption (UTF-8)
    000000000.json   the canonical record (id, image, text, split, meta; see :mod:`robust_mmr.data.schema`)

plus ``sizes.json`` (``{shard file name: samples}``, as open_clip reads it) and ``shards.json`` (the source,
split, counts and the records screened out). Keys are the sample's position in the written order, zero-padded,
so they sort and hold no dot; the record id lives in the ``.json``. Members are written with fixed metadata
(mtime 0, uid/gid 0), so the same dataset gives byte-identical shards.

Reading (:class:`ShardReader`): shard ``i`` of the (optionally per-epoch shuffled) list goes to the consumer
``i mod (world_size * workers)``, a consumer being one DataLoader worker of one rank; every sample is read
by exactly one consumer, one shard file at a time, sequentially.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from robust_mmr.data.dicom import is_dicom
from robust_mmr.data.images import ImageReadError, decode_image, read_image, resolve_image_path
from robust_mmr.data.schema import ImageTextRecord, parse_record, record_to_dict
from robust_mmr.errors import InputError
from robust_mmr.perturbations.seeding import derive_seed
from robust_mmr.training.screening import Skipped, screen_records

SHARD_PATTERN = "shard-{:06d}.tar"
DEFAULT_SAMPLES_PER_SHARD = 1000
_STORED = {"JPEG": "jpg", "PNG": "png"}  # formats kept byte for byte; the extension each gets in a shard
_IMAGE_EXTENSIONS = ("jpg", "png")


def write_shards(dataset_dir: str | Path, out_dir: str | Path, samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
                 split: str = "train") -> dict:
    """Write the usable ``split`` records of ``dataset_dir/image_text.jsonl`` as tar shards into ``out_dir``.

    Records are screened as for training (:func:`robust_mmr.training.screening.screen_records`); those skipped,
    and images that need converting but fail to decode, are listed in ``shards.json``, never written. Every
    shard but the last holds ``samples_per_shard`` samples. Returns the content of ``shards.json``.
    """
    if samples_per_shard < 1:
        raise InputError(f"--samples-per-shard must be at least 1, got {samples_per_shard}")
    root, out = Path(dataset_dir), Path(out_dir)
    records, skipped = screen_records(root, split, on_bad_sample="skip")
    if not records:
        raise InputError(f"{root}: no usable image_text records in split {split!r} ({len(skipped)} skipped)")
    if any(out.glob("shard-*.tar")):
        raise InputError(f"{out} already holds shards; write into an empty directory")
    out.mkdir(parents=True, exist_ok=True)
    with _ShardWriter(out, samples_per_shard) as writer:
        for record in records:
            try:
                writer.add(_members(root, record))
            except ImageReadError as err:
                skipped.append(Skipped(record.id, err.reason, err.detail))
    sizes = writer.sizes
    card = {"source": str(root), "split": split, "samples": sum(sizes.values()), "shards": len(sizes),
            "samples_per_shard": samples_per_shard, "skipped": [s.as_dict() for s in skipped]}
    (out / "sizes.json").write_text(json.dumps(sizes, indent=1) + "\n", encoding="utf-8")
    (out / "shards.json").write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return card


class _ShardWriter:
    """Writes samples into ``shard-000000.tar``, ``shard-000001.tar``, ..., ``per_shard`` samples each;
    ``sizes``: samples per shard file name. A context manager that closes the last shard."""

    def __init__(self, out: Path, per_shard: int):
        self.out, self.per_shard = out, per_shard
        self.sizes: dict[str, int] = {}
        self.written = 0
        self.tar: tarfile.TarFile | None = None

    def add(self, members: list[tuple[str, bytes]]) -> None:
        """Add one sample's (extension, bytes) members under the next key (its position, 9 digits)."""
        if self.written % self.per_shard == 0:
            self.close()
            self.tar = tarfile.open(self.out / SHARD_PATTERN.format(len(self.sizes)), "w", format=tarfile.USTAR_FORMAT)
            self.sizes[Path(self.tar.name).name] = 0
        for extension, data in members:
            _add(self.tar, f"{self.written:09d}.{extension}", data)
        self.sizes[Path(self.tar.name).name] += 1
        self.written += 1

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()
            self.tar = None

    def __enter__(self) -> _ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _members(root: Path, record: ImageTextRecord) -> list[tuple[str, bytes]]:
    """One sample's (extension, bytes) members: image, caption, record."""
    extension, image = _image_member(resolve_image_path(root, record.image))
    return [(extension, image), ("txt", record.text.encode("utf-8")),
            ("json", json.dumps(record_to_dict(record), ensure_ascii=False).encode("utf-8"))]


def _image_member(path: Path) -> tuple[str, bytes]:
    """(extension, bytes) of an image: a JPEG or PNG as stored; anything else (DICOM, TIFF...) decoded by
    :func:`robust_mmr.data.images.read_image` and written as a lossless PNG (16-bit grey stays 16-bit)."""
    stored = None if is_dicom(path) else _stored_extension(path)
    if stored:
        return stored, path.read_bytes()
    array, _ = read_image(path)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "png", buffer.getvalue()


def _stored_extension(path: Path) -> str | None:
    """The shard extension of a JPEG or PNG file, from its header; None for other formats."""
    try:
        with Image.open(path) as img:
            return _STORED.get(img.format or "")
    except (OSError, ValueError):
        return None  # not a format PIL knows: read_image decides


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add ``data`` as the regular file ``name`` with fixed metadata (reproducible archives)."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


class ShardSample(NamedTuple):
    """One streamed sample: its ``key``, ``record``, and ``image`` (H, W) or (H, W, C) as :func:`read_image`
    gives it, or None with ``problem`` saying why it failed to decode."""

    key: str
    record: ImageTextRecord
    image: np.ndarray | None
    problem: Skipped | None


class ShardReader(IterableDataset):
    """Stream the samples of a shard directory (or a list of shard files), this consumer's share only.

    ``rank``/``world_size`` default to ``torch.distributed``'s when it is initialised (else 0 and 1); the
    DataLoader worker comes from ``get_worker_info()``. With ``seed`` set, the shard order is shuffled per
    epoch (:meth:`set_epoch`) from ``(seed, epoch)``, the same on every rank, so the split stays exact; call it
    before each epoch's iterator is made (workers copy the reader then; persistent workers keep their copy).
    ``min_size``: decode JPEGs at reduced scale for a model of that size (see :func:`decode_image`).

    Consumers get whole shards: with fewer shards than ``world_size * workers`` some get none, and ranks can
    see different sample counts, so a distributed run should bound its steps (``max_steps``) rather than
    rely on every rank's stream ending together.
    """

    def __init__(self, shards: str | Path | list[Path], rank: int | None = None, world_size: int | None = None,
                 min_size: int | None = None, seed: int | None = None):
        self.shards = _shard_files(shards)
        default_rank, default_world = _distributed()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise InputError(f"rank {self.rank} is outside world size {self.world_size}")
        self.min_size, self.seed, self.epoch = min_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def my_shards(self) -> list[Path]:
        """The shard files this consumer (rank, DataLoader worker) reads this epoch, in order."""
        worker = get_worker_info()
        worker_id, workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        order = list(range(len(self.shards)))
        if self.seed is not None:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, "shard-order", "epoch", self.epoch))
            order = torch.randperm(len(self.shards), generator=generator).tolist()
        consumer, consumers = self.rank * workers + worker_id, self.world_size * workers
        return [self.shards[i] for i in order[consumer::consumers]]

    def __iter__(self) -> Iterator[ShardSample]:
        for shard in self.my_shards():
            for key, members in _samples(shard):
                yield self._sample(shard, key, members)

    def _sample(self, shard: Path, key: str, members: dict[str, bytes]) -> ShardSample:
        """Decode one sample's members; an image that fails to decode gives ``image=None`` and its problem."""
        name = f"{shard.name}:{key}"
        if "json" not in members:
            raise InputError(f"{name}: no .json member (not a shard written by `robust-mmr data shard`)")
        record, problems = parse_record("image_text", json.loads(members["json"].decode("utf-8")))
        if record is None:
            raise InputError(f"{name}.json is not an image_text record: {problems[0].reason} ({problems[0].detail})")
        extension = next((e for e in _IMAGE_EXTENSIONS if e in members), None)
        if extension is None:
            return ShardSample(key, record, None, Skipped(record.id, "missing image file", f"{name}: no image"))
        try:
            image, _ = decode_image(io.BytesIO(members[extension]), f"{name}.{extension}", self.min_size)
        except ImageReadError as err:
            return ShardSample(key, record, None, Skipped(record.id, err.reason, err.detail))
        return ShardSample(key, record, image, None)


def _shard_files(shards: str | Path | list[Path]) -> list[Path]:
    """The shard files of a directory (sorted by name), or the given list; refuses an empty set."""
    if isinstance(shards, (str, Path)):
        files = sorted(Path(shards).glob("shard-*.tar"))
        if not files:
            raise InputError(f"{shards}: no shard-*.tar files (write them with `robust-mmr data shard`)")
        return files
    if not shards:
        raise InputError("no shard files given")
    return [Path(s) for s in shards]


def _distributed() -> tuple[int, int]:
    """(rank, world size) of an initialised ``torch.distributed`` group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _samples(shard: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) per sample of one tar, read sequentially; a sample's members are adjacent.

    The key is the member name up to its first dot, the extension the rest (WebDataset's convention).
    """
    key, members = None, {}
    with tarfile.open(shard, "r|") as tar:  # a stream: no seeks, no index of the archive
        for info in tar:
            if not info.isfile():
                continue
            directory, _, base = info.name.rpartition("/")
            stem, _, extension = base.partition(".")
            member_key = f"{directory}/{stem}" if directory else stem
            if member_key != key and members:
                yield key, members
                members = {}
            key = member_key
            members[extension] = tar.extractfile(info).read()
    if members:
        yield key, members
