"""Reports written from scene facts in three site styles.

- ``verbose``: full prose, as a dictating radiologist writes it;
- ``terse``: telegraphic, with clinical abbreviations (CT, MRI, abd, R/L, bilat, NAD);
- ``checklist``: a templated, upper-case structured report.

Every style states the same facts (modality, region, lesion count, organ, side, largest
diameter); only the wording differs, so a style shift is a pure reporting-domain shift. The lesion
wording is the same for both modalities ("lesion", "nodule" in a lung): no phrase but the stated
modality tells CT from MRI, so masked modality words must be recovered from the image.
"""

from __future__ import annotations

import numpy as np

from robust_mmr.data.synthetic.anatomy import Scene

NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
MODALITY_LONG = {"ct": "CT", "mri": "MR"}
MODALITY_SHORT = {"ct": "CT", "mri": "MRI"}
REGION_SHORT = {"head": "head", "chest": "chest", "abdomen": "abd"}
SIDE_SHORT = {"right": "R", "left": "L", "bilateral": "bilat"}
PAIRED = {"lung", "kidney", "brain"}


def write_report(scene: Scene, style: str, rng: np.random.Generator) -> str:
    """A report of ``scene`` in ``style`` (one of ``verbose``, ``terse``, ``checklist``)."""
    return _STYLES[style](scene, rng)


def _lesion_word(scene: Scene, plural: bool) -> str:
    word = "nodule" if scene.organ == "lung" else "focal lesion"
    return word + ("s" if plural else "")


def _organ_phrase(scene: Scene) -> str:
    """Where the lesions are, with its article: "the right kidney", "both lungs", "the liver"."""
    organ = "cerebral hemisphere" if scene.organ == "brain" else scene.organ
    if scene.side == "bilateral":
        return f"both {organ}s"
    return f"the {scene.side} {organ}" if scene.organ in PAIRED else f"the {organ}"


def _verbose(scene: Scene, rng: np.random.Generator) -> str:
    opening = str(rng.choice(["{m} image of the {r}.", "Axial {m} of the {r} was reviewed."]))
    text = opening.format(m=MODALITY_LONG[scene.modality], r=scene.region)
    if scene.count == 0:
        closing = str(rng.choice(["No focal lesion is identified.", "There is no focal abnormality."]))
        return f"{text} {closing}"
    largest = scene.largest.diameter_mm
    if scene.count == 1:
        finding = f"There is a {largest:.0f} mm {_lesion_word(scene, False)} in {_organ_phrase(scene)}."
    else:
        finding = (f"There are {NUMBER_WORDS[scene.count]} {_lesion_word(scene, True)} in "
                   f"{_organ_phrase(scene)}, the largest measuring {largest:.0f} mm.")
    closing = str(rng.choice(["The remaining structures are unremarkable.", "No other abnormality is seen."]))
    return f"{text} {finding} {closing}"


def _terse(scene: Scene, rng: np.random.Generator) -> str:
    head = f"{MODALITY_SHORT[scene.modality]} {REGION_SHORT[scene.region]}:"
    if scene.count == 0:
        return f"{head} {rng.choice(['NAD.', 'no focal lesion.'])}"
    where = scene.organ if scene.organ not in PAIRED else f"{SIDE_SHORT[scene.side]} {scene.organ}"
    where += "s" if scene.side == "bilateral" else ""
    lesion = "nodule" if scene.organ == "lung" else "lesion"
    plural = "s" if scene.count > 1 else ""
    largest = f", largest {scene.largest.diameter_mm:.0f}mm" if scene.count > 1 else f" {scene.largest.diameter_mm:.0f}mm"
    return f"{head} {scene.count} {lesion}{plural} {where}{largest}. {rng.choice(['Otherwise NAD.', 'Else unremarkable.'])}"


def _checklist(scene: Scene, rng: np.random.Generator) -> str:
    fields = [
        ("MODALITY", MODALITY_SHORT[scene.modality]),
        ("REGION", scene.region.upper()),
        ("LESIONS", str(scene.count)),
    ]
    if scene.count:
        fields += [
            ("ORGAN", scene.organ.upper()),
            ("SIDE", scene.side.upper()),
            ("LARGEST", f"{scene.largest.diameter_mm:.0f} MM"),
        ]
    fields.append(("IMPRESSION", "ABNORMAL" if scene.count else "NORMAL"))
    return "; ".join(f"{k}: {v}" for k, v in fields)


_STYLES = {"verbose": _verbose, "terse": _terse, "checklist": _checklist}
REPORT_STYLES = tuple(_STYLES)
