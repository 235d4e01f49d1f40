"""Predictions for new inputs from a fine-tuned run: VQA answers, class labels, or captions ranked for an image.

A *row* is a dict with ``image`` (a DICOM, PNG or JPEG path; relative paths are read from ``root``) and, for VQA
``question``, for classification ``text``. Rows come one at a time or from a CSV (header line) or JSON Lines file
(:func:`read_rows`). A row that cannot be answered (image missing or unreadable, empty question) gets an entry
with ``error`` naming the problem; the other rows are still answered. Retrieval ranks a gallery of captions for
each row's image (the rows' own ``text`` values unless a gallery is given).

    from robust_mmr.tasks.predict import RunPredictor
    predictor = RunPredictor.load("runs/ft/robust-seed0")
    predictor.predict([{"image": "scan.dcm", "question": "Is there a pleural effusion?"}])
    # [{"row": 0, "image": "scan.dcm", "question": "...", "answer": "no", "top": [{"answer": "no", "p": 0.91}, ...]}]

The model runs on ``device`` (``auto``: a CUDA GPU when one is present, else the CPU) at ``precision`` (``auto`` by
default: the rule of :mod:`robust_mmr.hardware` for that device, as for ``evaluate``); images are read on the CPU,
every batch is moved to the device and the scores come back to the CPU.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from robust_mmr.data.images import ImageReadError, image_to_tensor, read_image
from robust_mmr.errors import InputError
from robust_mmr.evaluation.predict import AUTO_DEVICE, accelerator_of, resolve_device
from robust_mmr.hardware import FP32, autocast, resolve_precision
from robust_mmr.tasks.finetune import load_finetuned
from robust_mmr.tasks.labels import LabelVocab
from robust_mmr.tasks.retrieval import is_retrieval_run, load_retrieval

TEXT_FIELD = {"vqa": "question", "classify": "text", "retrieve": "text"}  # the text column each task reads
BATCH = 32


def read_rows(path: str | Path) -> list[dict]:
    """Rows from a CSV file (a header line naming ``image`` and ``question`` / ``text``, then one row per line) or a
    JSON Lines file (one object per line). Every non-empty line after the header is one row: a line that does not
    parse (an unbalanced quote, a wrong number of fields, not a JSON object) becomes a row with ``error``, so it is
    reported, never lost or merged into its neighbours."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such input file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    if path.suffix.lower() == ".csv":
        return _csv_rows(path, text)
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            row = {"error": f"line {number}: not JSON ({err.msg})"}
        rows.append(row if isinstance(row, dict) else {"error": f"line {number}: not a JSON object"})
    return rows


def _csv_rows(path: Path, text: str) -> list[dict]:
    lines = text.splitlines()
    header = next(csv.reader(lines[:1]), None) if lines else None
    if not header or "image" not in header:
        raise InputError(f"{path}: a CSV needs a header line with an 'image' column, got {header}")
    rows = []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        try:
            values = next(csv.reader([line], strict=True))
        except csv.Error as err:
            rows.append({"error": f"line {number}: malformed CSV ({err})"})
            continue
        if len(values) != len(header):
            rows.append({"error": f"line {number}: {len(values)} fields where the header has {len(header)}"})
            continue
        rows.append(dict(zip(header, values)))
    return rows


@dataclass
class RunPredictor:
    """A fine-tuned run ready to answer rows. ``task``: vqa, classify or retrieve. ``model`` is moved to ``device``
    (``auto``, ``cpu``, ``cuda`` or ``cuda:N``) and runs at ``precision`` (a resolved one: fp32 or bf16-mixed)."""

    model: torch.nn.Module
    tokenizer: object
    task: str
    labels: LabelVocab | None
    image_size: int
    channels: int
    max_length: int
    device: str | torch.device = AUTO_DEVICE
    precision: str = FP32

    def __post_init__(self) -> None:
        self.device = resolve_device(self.device)
        self.model = self.model.eval().to(self.device)

    @classmethod
    def load(cls, run_dir: str | Path, device: str = AUTO_DEVICE, precision: str = "auto") -> RunPredictor:
        """Load a fine-tuning run (or its export) for prediction on ``device``; the weights never go through pickle.
        ``precision``: ``auto`` (the default: the hardware rule for ``device``), ``32-true`` or ``bf16-mixed``."""
        if is_retrieval_run(run_dir):
            model, tokenizer, run_cfg, task = load_retrieval(run_dir)
            labels = None
        else:
            model, tokenizer, run_cfg, task = load_finetuned(run_dir)
            labels = LabelVocab(tuple(task["labels"]))
        m = run_cfg.model
        device = resolve_device(device)
        return cls(model, tokenizer, task["task"], labels, m.image_size, m.channels, m.max_text_length, device,
                   resolve_precision(precision, accelerator_of(device)))

    def predict(self, rows: list[dict], root: str | Path = ".", top_k: int = 3,
                gallery: list[str] | None = None) -> list[dict]:
        """One result per row, in order: the answer or label with its top-k probabilities, or for retrieval
        the top-k captions of ``gallery`` (default: the texts of the rows that could be read) with their
        similarities; or ``error``."""
        if top_k < 1:
            raise InputError(f"top_k must be at least 1, got {top_k}")
        results, ready = [], []
        for i, row in enumerate(rows):
            entry = {"row": i, **{k: row.get(k) for k in ("image", TEXT_FIELD[self.task]) if k in row}}
            problem = row.get("error") or self._problem(row)
            pixels = None
            if problem is None:
                try:
                    pixels = self._pixels(Path(root) / str(row["image"]))
                except ImageReadError as err:
                    problem = f"image {row['image']}: {err}"
            if problem is not None:
                entry["error"] = problem
            else:
                text = str(row.get(TEXT_FIELD[self.task]) or "")
                length = len(self.tokenizer(text)["input_ids"])
                if length > self.max_length:
                    entry["note"] = (f"{TEXT_FIELD[self.task]} cut to the model's {self.max_length} tokens "
                                     f"(it has {length}): the rest was not read")
                ready.append((entry, pixels, text))
            results.append(entry)
        if self.task == "retrieve":
            self._rank(ready, gallery if gallery is not None else [text for _, _, text in ready if text], top_k)
        else:
            self._classify(ready, top_k)
        return results

    def _problem(self, row: dict) -> str | None:
        if not str(row.get("image") or "").strip():
            return "no image given"
        if self.task != "retrieve" and not str(row.get(TEXT_FIELD[self.task]) or "").strip():
            return f"empty {TEXT_FIELD[self.task]}"
        return None

    def _pixels(self, path: Path) -> Tensor:
        if path.is_dir():
            raise ImageReadError("not a file", f"{path} is a folder, not an image file")
        if not path.exists():
            raise ImageReadError("missing", f"no file at {path}")
        array, _ = read_image(path)
        return image_to_tensor(array, self.image_size, self.channels)

    def _tokens(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """input_ids and attention_mask (B, L) of ``texts``, on the model's device."""
        enc = self.tokenizer(texts, padding="longest", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    def _stack(self, pixels: list[Tensor]) -> Tensor:
        """Images (C, H, W) as one batch (B, C, H, W) on the model's device."""
        return torch.stack(pixels).to(self.device)

    @torch.no_grad()
    def _classify(self, ready: list[tuple[dict, Tensor, str]], top_k: int) -> None:
        key = "answer" if self.task == "vqa" else "label"
        for start in range(0, len(ready), BATCH):
            chunk = ready[start:start + BATCH]
            pixels = self._stack([p for _, p, _ in chunk])
            with autocast(self.precision, self.device):
                logits = self.model(pixels, *self._tokens([text for _, _, text in chunk]))
            probs = logits.float().softmax(-1).cpu()
            top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
            for (entry, _, _), p, idx in zip(chunk, top.values.tolist(), top.indices.tolist()):
                entry[key] = self.labels.labels[idx[0]]
                entry["top"] = [{key: self.labels.labels[j], "p": round(q, 4)} for q, j in zip(p, idx)]

    @torch.no_grad()
    def _rank(self, ready: list[tuple[dict, Tensor, str]], gallery: list[str], top_k: int) -> None:
        if not ready:
            return
        if not gallery:
            raise InputError("retrieval needs captions to rank: give a gallery (--captions) or rows with 'text'")
        texts = []
        for start in range(0, len(gallery), BATCH):
            with autocast(self.precision, self.device):
                tokens, valid = self.model.backbone.encode_text(*self._tokens(gallery[start:start + BATCH]))
                texts.append(self.model.text_embedding(tokens, valid).float())
        text_emb = torch.cat(texts)  # (G, dim) on the device
        for start in range(0, len(ready), BATCH):
            chunk = ready[start:start + BATCH]
            with autocast(self.precision, self.device):
                tokens, _ = self.model.backbone.encode_image(self._stack([p for _, p, _ in chunk]))
                image_emb = self.model.image_embedding(tokens).float()
            sims = (image_emb @ text_emb.T).cpu()
            top = sims.topk(min(top_k, len(gallery)), dim=-1)
            for (entry, _, _), s, idx in zip(chunk, top.values.tolist(), top.indices.tolist()):
                entry["captions"] = [{"caption": gallery[j], "similarity": round(v, 4)} for v, j in zip(s, idx)]
