"""The synthetic domain-shift dataset: scenes → images, reports and VQA in the canonical schema.

Output layout of ``generate_dataset(out, ...)``::

    out/images/synth-000000.png     8-bit grayscale scans
    out/image_text.jsonl            one report per image (canonical image_text records)
    out/vqa.jsonl                   7–10 questions per image (canonical vqa records)
    out/scenes.jsonl                the ground-truth facts of every image (lesion geometry included)
    out/dataset.json                generator settings, domain parameters and counts

Deterministic: sample ``i`` draws everything from ``SeedSequence([seed, i])``, so the same seed
gives byte-identical files, and a larger ``n`` only appends samples. The scene (every fact an answer
depends on) comes from its own child stream and never reads the domain: which site acquires a scan is
independent of every answer, so a site shift changes only the nuisances (intensity curve, noise,
resolution, artefact, report style). Domains are assigned
round-robin (``i mod K``) and splits by a fixed 10-slot pattern per domain (70% train, 10% val,
20% test), so every domain has every split even in small sets.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from robust_mmr.data.manifest import write_manifest
from robust_mmr.data.schema import ImageTextRecord, VQARecord
from robust_mmr.data.synthetic.anatomy import Scene, sample_scene
from robust_mmr.data.synthetic.domains import DOMAINS, Domain, acquire
from robust_mmr.data.synthetic.questions import ask_questions
from robust_mmr.data.synthetic.render import render_scene
from robust_mmr.data.synthetic.reports import write_report
from robust_mmr.errors import InputError

GENERATOR_VERSION = "robust-mmr synthetic v2"
SPLIT_PATTERN = ("train", "train", "test", "train", "val", "train", "train", "test", "train", "train")


@dataclass(frozen=True)
class SyntheticSample:
    id: str
    scene: Scene
    domain: Domain
    split: str
    image: np.ndarray  # uint8 (size, size)
    report: str


def make_sample(index: int, seed: int, num_domains: int, size: int) -> SyntheticSample:
    """Sample ``index`` of the dataset with ``seed``: scene, acquisition, report. Pure function of its arguments."""
    scene_rng, acquisition_rng, report_rng = (np.random.default_rng(s) for s in
                                              np.random.SeedSequence([seed, index]).spawn(3))
    domain = DOMAINS[index % num_domains]
    scene = sample_scene(scene_rng)  # never reads the domain: site nuisances are independent of every answer
    image = acquire(render_scene(scene, size, scene_rng), domain, acquisition_rng)
    split = SPLIT_PATTERN[(index // num_domains) % len(SPLIT_PATTERN)]
    report = write_report(scene, domain.report_style, report_rng)
    return SyntheticSample(f"synth-{index:06d}", scene, domain, split, image, report)


def sample_image(seed: int = 0, size: int = 128) -> np.ndarray:
    """One clean synthetic scan with at least one lesion, uint8 (size, size): a test card for galleries."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2**31]))
    scene = sample_scene(rng, min_lesions=1)
    return np.round(render_scene(scene, size, rng) * 255).astype(np.uint8)


def generate_dataset(out: str | Path, n: int, seed: int = 0, num_domains: int = 3, size: int = 128,
                     progress: bool = True) -> dict:
    """Write ``n`` synthetic image–report pairs with their VQA questions into ``out``. Returns the dataset card."""
    if n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    if not 2 <= num_domains <= len(DOMAINS):
        raise InputError(f"--domains must be between 2 and {len(DOMAINS)}, got {num_domains}")
    if size < 32 or size % 16:
        raise InputError(f"--size must be a multiple of 16 and at least 32 (ViT patch 16), got {size}")
    out = Path(out)
    if (out / "images").is_symlink():  # a converter's or split's link: writing through it would change another set
        raise InputError(f"{out / 'images'} is a link to {(out / 'images').resolve()}; synthesising into it would "
                         "overwrite that folder's images: choose another --out")
    (out / "images").mkdir(parents=True, exist_ok=True)
    pairs, questions, scenes = [], [], []
    for i in tqdm(range(n), desc="synthesising", unit=" scans", disable=not progress):
        s = make_sample(i, seed, num_domains, size)
        rel = f"images/{s.id}.png"
        Image.fromarray(s.image, mode="L").save(out / rel, format="PNG", compress_level=6)
        meta = {"domain": s.domain.name, "modality": s.scene.modality, "region": s.scene.region,
                "report_style": s.domain.report_style, "source": "synthetic"}
        pairs.append(ImageTextRecord(s.id, rel, s.report, s.split, meta))
        q_rng = np.random.default_rng(np.random.SeedSequence([seed, i, 1]))
        for j, q in enumerate(ask_questions(s.scene, q_rng)):
            questions.append(VQARecord(f"{s.id}-q{j}", rel, q.question, q.answer, q.answer_type, s.split,
                                       {**meta, "question_type": q.question_type}))
        scenes.append({"id": s.id, "domain": s.domain.name, "split": s.split, **s.scene.to_dict()})
    write_manifest(out / "image_text.jsonl", pairs)
    write_manifest(out / "vqa.jsonl", questions)
    with (out / "scenes.jsonl").open("w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(json.dumps(scene) + "\n" for scene in scenes)
    card = {
        "generator": GENERATOR_VERSION,
        "seed": seed,
        "n": n,
        "size": size,
        "domains": [d.describe() for d in DOMAINS[:num_domains]],
        "counts": {
            "images": n,
            "questions": len(questions),
            "splits": dict(sorted(Counter(p.split for p in pairs).items())),
        },
    }
    (out / "dataset.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card
