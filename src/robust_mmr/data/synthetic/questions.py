"""VQA questions generated from scene facts, each with its answer and answer type.

Closed (yes/no): lesion presence, presence in a named organ and side, more than one lesion,
modality check. Open: lesion count, modality, body region, and — when lesions exist — their side
(patient's), organ and the size class of the largest. Answers are lower-case words or digits. The
wording of a question never depends on its answer (no singular/plural by lesion count), so the
question-only baseline learns only each question's answer prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robust_mmr.data.synthetic.anatomy import MODALITIES, REGIONS, Scene

MODALITY_ANSWER = {"ct": "ct", "mri": "mri"}
MODALITY_NAME = {"ct": "a CT", "mri": "an MRI"}
UNPAIRED = {"liver", "spleen"}  # single organs: their side is implied by anatomy, not named


@dataclass(frozen=True)
class Question:
    question: str
    answer: str
    answer_type: str  # "open" | "closed"
    question_type: str  # presence | organ_presence | multiple | modality_check | count | modality | region | side | organ | size


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def ask_questions(scene: Scene, rng: np.random.Generator) -> list[Question]:
    """All questions for one scene, in a fixed order (phrasings vary with ``rng``)."""
    region = REGIONS[scene.region]
    sites = [o for o in region.organs if o.lesion_site]
    probe = sites[int(rng.integers(len(sites)))]
    organ_words = "cerebral hemisphere" if probe.name == "brain" else probe.name
    probe_name = organ_words if probe.side not in ("left", "right") or probe.name in UNPAIRED else f"{probe.side} {organ_words}"
    in_probe = any(l.organ == probe.name and l.side == probe.side for l in scene.lesions)
    asked_modality = str(rng.choice(MODALITIES))
    qs = [
        Question(str(rng.choice(["Is there a lesion?", "Is any lesion present in this image?"])),
                 _yes_no(scene.count > 0), "closed", "presence"),
        Question(f"Is there a lesion in the {probe_name}?", _yes_no(in_probe), "closed", "organ_presence"),
        Question("Is there more than one lesion?", _yes_no(scene.count > 1), "closed", "multiple"),
        Question(f"Is this {MODALITY_NAME[asked_modality]} scan?", _yes_no(asked_modality == scene.modality),
                 "closed", "modality_check"),
        Question(str(rng.choice(["How many lesions are there?", "How many lesions are visible?"])),
                 str(scene.count), "open", "count"),
        Question(str(rng.choice(["What imaging modality was used?", "What is the modality of this image?"])),
                 MODALITY_ANSWER[scene.modality], "open", "modality"),
        Question("Which part of the body is shown?", scene.region, "open", "region"),
    ]
    if scene.count:
        qs += [
            Question("On which side of the patient is the abnormality?", scene.side, "open", "side"),
            Question("Which organ is abnormal?", scene.organ, "open", "organ"),
            Question("What is the size of the largest lesion?", scene.largest.size, "open", "size"),
        ]
    return qs
