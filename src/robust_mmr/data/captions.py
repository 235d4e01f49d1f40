"""Image captions built from VQA-Med-2019's category answers, for pre-training on its images.

VQA-Med-2019 asks one question per category about each training/validation image (C1 modality,
C2 plane, C3 organ system, C4 abnormality; a test image has one question only). The answers of one
image make a short, deterministic caption::

    {modality}; {plane}; {organ}: {finding}.

    "ct noncontrast; axial plane; skull and contents: glioblastoma multiforme."
    "xr - plain film; ap view; lung, mediastinum, pleura: normal."

Parts without a usable answer are left out (``"mri; sagittal plane; spine and contents."``). Parts
are separated by ``;`` because organ answers contain commas. How each part is read:

- **modality** (C1): an open answer is used as given, prefixed with the modality its question names
  when the answer names none ("is this a contrast or noncontrast ct?" → ``noncontrast`` →
  ``ct noncontrast``) and followed by "contrast" when the question asks about contrast and the
  answer does not say it ("what type of contrast did this patient have?" → ``iv`` → ``iv contrast``).
  A *yes* gives the coarse modality the question names ("is this a ct scan?" → ``ct``). A *no* says
  only what the image is not, so it is skipped. When C1 gives nothing, the coarse modality named by
  another question of the image is used ("what is abnormal in the mri?" → ``mri``).
- **plane** (C2): anatomical planes get "plane" (``axial plane``), projections get "view"
  (``ap view``, ``lateral view``), ``3d reconstruction`` stays as it is. Yes/no answers are skipped.
- **organ** (C3): the answer as given; yes/no answers are skipped.
- **finding** (C4): an open answer as given; a yes/no answer becomes ``normal`` or ``abnormal``
  according to what the question asks ("does this image look normal?" yes → ``normal``; "is there
  something wrong in the image?" yes → ``abnormal``).

An image none of whose questions gives a usable part is dropped: the number dropped is the number of
distinct input images minus the number of captions returned.
"""

from __future__ import annotations

import re
from pathlib import Path

from robust_mmr.data.converters.common import modality_from_text, normalise_answer
from robust_mmr.data.schema import ImageTextRecord, VQARecord
from robust_mmr.errors import InputError

CATEGORIES = ("modality", "plane", "organ", "abnormality")
# meta keys copied from the image's first record onto its caption (the converter's per-image domain keys)
KEPT_META = ("source", "synpic", "modality", "modality_answer", "plane", "organ")
ANATOMICAL_PLANES = frozenset({"axial", "sagittal", "coronal", "transverse", "oblique", "longitudinal"})
YES_NO = ("yes", "no")
_NORMAL = re.compile(r"\bnormal\b")
_CONTRAST = re.compile(r"contrast")


def captions_from_category_answers(records: list[VQARecord]) -> list[ImageTextRecord]:
    """One caption per image of VQA-Med-2019 ``records`` (as converted: ``meta.category`` on each).

    Images come out in the order of their first record; each caption keeps that record's split and
    the domain keys of :data:`KEPT_META` it carries. Should an image have several questions of one
    category, the first is used. Images without any usable answer are left out (see the module
    docstring). Raises :class:`InputError` for a record without a known ``meta.category``.
    """
    by_image: dict[str, list[VQARecord]] = {}
    for record in records:
        category = record.meta.get("category")
        if category not in CATEGORIES:
            raise InputError(f"record {record.id}: meta.category is {category!r}; expected one of "
                             f"{', '.join(CATEGORIES)} (convert VQA-Med-2019 with the vqa-med-2019 converter)")
        by_image.setdefault(record.image, []).append(record)
    captions = []
    for image, group in by_image.items():
        questions: dict[str, VQARecord] = {}
        for record in group:
            questions.setdefault(str(record.meta["category"]), record)
        text = caption_text(questions)
        if text is not None:
            first = group[0]
            meta = {key: first.meta[key] for key in KEPT_META if key in first.meta}
            captions.append(ImageTextRecord(f"caption-{first.split}-{Path(image).stem}", image, text, first.split,
                                            meta))
    return captions


def caption_text(questions: dict[str, VQARecord]) -> str | None:
    """The caption of one image from its questions by category, or None when no part is usable."""
    descriptors = [part for part in (modality_part(questions), plane_part(questions.get("plane")),
                                     organ_part(questions.get("organ"))) if part]
    finding = finding_part(questions.get("abnormality"))
    if finding and descriptors:
        return f"{'; '.join(descriptors)}: {finding}."
    if finding or descriptors:
        return f"{finding or '; '.join(descriptors)}."
    return None


def modality_part(questions: dict[str, VQARecord]) -> str | None:
    """The modality phrase: from the C1 answer, else the coarse modality another question names."""
    record = questions.get("modality")
    if record is not None:
        answer, question = _answer(record), normalise_answer(record.question)
        named = modality_from_text(question)
        if answer not in YES_NO:
            if modality_from_text(answer) == "other" and named != "other":
                answer = f"{named} {answer}"
            if _CONTRAST.search(question) and not _CONTRAST.search(answer):
                answer = f"{answer} contrast"
            return answer
        if answer == "yes" and named != "other":
            return named
    for category, other in questions.items():
        named = modality_from_text(normalise_answer(other.question))
        if category != "modality" and named != "other":  # a C1 yes/no question names a guess, not the fact
            return named
    return None


def plane_part(record: VQARecord | None) -> str | None:
    """``<plane> plane`` for anatomical planes, ``<projection> view`` otherwise (yes/no: None)."""
    answer = _open_answer(record)
    if answer is None or "reconstruction" in answer:
        return answer
    return f"{answer} plane" if answer in ANATOMICAL_PLANES else f"{answer} view"


def organ_part(record: VQARecord | None) -> str | None:
    """The organ-system answer as given (yes/no: None)."""
    return _open_answer(record)


def finding_part(record: VQARecord | None) -> str | None:
    """The abnormality answer; a yes/no answer read against its question as ``normal`` / ``abnormal``."""
    if record is None:
        return None
    answer = _answer(record)
    if answer not in YES_NO:
        return answer
    asks_normal = bool(_NORMAL.search(normalise_answer(record.question)))
    return "normal" if (answer == "yes") == asks_normal else "abnormal"


def _open_answer(record: VQARecord | None) -> str | None:
    if record is None:
        return None
    answer = _answer(record)
    return None if answer in YES_NO else answer


def _answer(record: VQARecord) -> str:
    """The answer lower-cased, single-spaced, without a final full stop (the caption adds its own)."""
    return normalise_answer(record.answer).rstrip(". ")
