"""What pre-trained image features hold: linear probes for scene facts, in-domain and on the held-out site.

For each pre-training run, every downstream image is encoded once by the frozen vision encoder (no mask; the mean
of its output tokens, the feature Robust-MMR's domain consistency acts on). A logistic regression per scene fact
(``modality``, ``region``, ``lesion``: any lesion) is fitted on the training-split images of the training sites and
scored on the test-split images of the training sites (in-domain) and of the held-out site: what transfers to an
unseen scanner. ``site`` (which site, fitted and scored over all sites; chance 1/3) says how visible the
acquisition is in the features. Runs are grouped by the folder two levels above their ``pretrain/``
(``<bench>/runs/<variant>/seed<k>/pretrain``): mean ± std over each group's seeds.

    python benchmarks/feature_probe.py --data runs/bench-synthetic/data runs/bench-synthetic/runs/*/seed*/pretrain
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from robust_mmr.data.images import image_to_tensor, load_image
from robust_mmr.data.manifest import read_manifest
from robust_mmr.evaluation.metrics import mean_std
from robust_mmr.model.mmr_model import mean_tokens
from robust_mmr.training.checkpoint import load_pretrained

FACTS = ("modality", "region", "lesion")
HELD_OUT = "site-c"


def scene_targets(data: Path) -> tuple[list[str], dict[str, np.ndarray], np.ndarray]:
    """(image paths, target name → labels, is-training-split) over the image–text pairs of ``data``."""
    scenes = {json.loads(line)["id"]: json.loads(line) for line in (data / "scenes.jsonl").read_text().splitlines()}
    pairs = read_manifest(data / "image_text.jsonl")
    labels = defaultdict(list)
    for p in pairs:
        scene = scenes[p.id]
        labels["site"].append(p.meta["domain"])
        labels["modality"].append(scene["modality"])
        labels["region"].append(scene["region"])
        labels["lesion"].append(str(bool(scene["lesions"])))
    return ([p.image for p in pairs], {k: np.array(v) for k, v in labels.items()},
            np.array([p.split == "train" for p in pairs]))


@torch.no_grad()
def image_features(run: Path, data: Path, images: list[str], batch: int = 128) -> np.ndarray:
    """(N, D) mean vision-encoder tokens of ``images`` under the pre-trained model of ``run``."""
    model, _, cfg = load_pretrained(run)
    model.eval()
    out = []
    for start in range(0, len(images), batch):
        pixels = torch.stack([image_to_tensor(load_image(data / rel), cfg.model.image_size, cfg.model.channels)
                              for rel in images[start:start + batch]])
        tokens, valid = model.encode_image(pixels)
        out.append(mean_tokens(tokens, valid).float().numpy())
    return np.concatenate(out)


def probe_accuracy(features: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    classifier.fit(features[train], labels[train])
    return float((classifier.predict(features[test]) == labels[test]).mean())


def run_probes(features: np.ndarray, labels: dict[str, np.ndarray], train: np.ndarray, test: np.ndarray) -> dict:
    """{"site": acc, "<fact> in-domain": acc, "<fact> held-out": acc} for one run's features."""
    held_out = labels["site"] == HELD_OUT
    out = {"site": probe_accuracy(features, labels["site"], train, test)}
    for fact in FACTS:
        out[f"{fact} in-domain"] = probe_accuracy(features, labels[fact], train & ~held_out, test & ~held_out)
        out[f"{fact} held-out"] = probe_accuracy(features, labels[fact], train & ~held_out, test & held_out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="pre-training run folders")
    parser.add_argument("--data", type=Path, required=True, help="a synthetic set (with scenes.jsonl)")
    parser.add_argument("--out", type=Path, help="also write the table as JSON")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    images, labels, train = scene_targets(args.data)
    test = np.array([split == "test" for split in (p.split for p in read_manifest(args.data / "image_text.jsonl"))])
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in args.runs:
        accuracy = run_probes(image_features(run, args.data, images), labels, train, test)
        name = run.parent.parent.name
        for key, value in accuracy.items():
            groups[name][key].append(value)
        print(f"{run}: " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()), flush=True)
    columns = list(next(iter(groups.values())))
    print(f"\nLinear probes on frozen image features (fitted on {int((train & (labels['site'] != HELD_OUT)).sum())} "
          f"training-split images of the training sites; scored on test-split images, {HELD_OUT} held out); "
          "mean ± std over seeds\n")
    print("| pre-training | seeds | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for name, per in groups.items():
        cells = [f"{m:.3f} ± {s:.3f}" for m, s in (mean_std(per[c]) for c in columns)]
        print(f"| {name} | {len(per['site'])} | " + " | ".join(cells) + " |")
    if args.out:
        args.out.write_text(json.dumps({k: dict(v) for k, v in groups.items()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
