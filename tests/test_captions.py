"""Captions from VQA-Med-2019 category answers: template, grouping, yes/no handling, dropping."""

from __future__ import annotations

from collections import Counter

import pytest

from conftest import SHARED_DATA
from robust_mmr.data.captions import captions_from_category_answers
from robust_mmr.data.schema import VQARecord
from robust_mmr.errors import InputError

VQA_MED = SHARED_DATA / "vqa_med_2019"


def qa(image: str, category: str, question: str, answer: str, split: str = "train", **meta) -> VQARecord:
    """A VQA-Med-2019 record as the converter writes it."""
    stem = image.split("/")[-1].split(".")[0]
    return VQARecord(f"vqamed2019-{split}-{stem}-{category}", image, question, answer, "open", split,
                     {"category": category, "source": "vqa-med-2019", "synpic": stem, **meta})


def full_image(image: str, c1: tuple[str, str], split: str = "train", **meta) -> list[VQARecord]:
    """The four category questions of one image, with the given (question, answer) for C1."""
    return [qa(image, "modality", *c1, split, **meta),
            qa(image, "plane", "in what plane is this image taken?", "axial", split, **meta),
            qa(image, "organ", "what organ system is shown in the image?", "skull and contents", split, **meta),
            qa(image, "abnormality", "what is abnormal in the mri?", "Glioblastoma Multiforme.", split, **meta)]


def one_caption(records: list[VQARecord]) -> str:
    (caption,) = captions_from_category_answers(records)
    return caption.text


def test_template_orders_parts_and_keeps_split_and_domain_meta():
    records = full_image("images/val/synpic1.jpg", ("what imaging modality was used?", "MR - FLAIR"), "val",
                         modality="mri", plane="axial", organ="skull and contents", modality_answer="mr - flair")
    (caption,) = captions_from_category_answers(records)
    assert caption.text == "mr - flair; axial plane; skull and contents: glioblastoma multiforme."
    assert (caption.id, caption.image, caption.split) == ("caption-val-synpic1", "images/val/synpic1.jpg", "val")
    assert caption.meta == {"source": "vqa-med-2019", "synpic": "synpic1", "modality": "mri", "plane": "axial",
                            "organ": "skull and contents", "modality_answer": "mr - flair"}


def test_groups_by_image_in_first_seen_order():
    a = full_image("images/train/synpic2.jpg", ("what kind of scan is this?", "xr - plain film"))
    b = full_image("images/train/synpic3.jpg", ("is this a ct scan?", "yes"))
    interleaved = [b[0], a[0], a[1], b[1], b[2], a[2], a[3], b[3]]
    captions = captions_from_category_answers(interleaved)
    assert [c.image for c in captions] == ["images/train/synpic3.jpg", "images/train/synpic2.jpg"]
    assert [c.text.split(";")[0] for c in captions] == ["ct", "xr - plain film"]


@pytest.mark.parametrize(("question", "answer", "expected"), [
    ("is this a ct scan?", "yes", "ct"),  # yes: the modality the question names
    ("is this a ct scan?", "no", "mri"),  # no: skipped; the C4 question names mri
    ("is this a contrast or noncontrast ct?", "noncontrast", "ct noncontrast"),  # answer names no modality
    ("what type of contrast did this patient have?", "iv", "iv contrast"),
    ("what is the mr weighting in this image?", "t2", "t2"),
])
def test_modality_from_answer_question_or_other_questions(question, answer, expected):
    assert one_caption(full_image("images/train/synpic4.jpg", (question, answer))).split(";")[0] == expected


def test_yes_no_finding_read_against_its_question_and_projections_are_views():
    image = "images/train/synpic5.jpg"
    records = [qa(image, "modality", "what kind of image is this?", "xr - plain film"),
               qa(image, "plane", "which plane is this?", "ap"),
               qa(image, "abnormality", "does this image look normal?", "no")]
    assert one_caption(records) == "xr - plain film; ap view: abnormal."
    records[-1] = qa(image, "abnormality", "is there something wrong in the image?", "no")
    assert one_caption(records) == "xr - plain film; ap view: normal."


def test_partial_images_keep_what_they_have_and_unusable_ones_are_dropped():
    only_plane = [qa("images/test/synpic6.jpg", "plane", "what plane is this?", "3d reconstruction", "test")]
    only_no = [qa("images/test/synpic7.jpg", "modality", "is this an mri image?", "no", "test")]
    captions = captions_from_category_answers(only_plane + only_no)
    assert [(c.image, c.text) for c in captions] == [("images/test/synpic6.jpg", "3d reconstruction.")]


def test_first_question_of_a_category_wins():
    image = "images/train/synpic8.jpg"
    records = [qa(image, "organ", "what organ system is imaged?", "breast"),
               qa(image, "organ", "what organ system is shown?", "musculoskeletal")]
    assert one_caption(records) == "breast."


def test_record_without_category_is_an_input_error():
    record = VQARecord("x", "images/a.jpg", "what is this?", "ct", "open", "train", {"source": "vqa-rad"})
    with pytest.raises(InputError, match="meta.category"):
        captions_from_category_answers([record])


@pytest.mark.realdata
@pytest.mark.skipif(not VQA_MED.is_dir(), reason="shared real data absent")
def test_real_vqa_med_2019_captions(tmp_path):
    from robust_mmr.data.converters import convert_dataset
    from robust_mmr.data.manifest import read_manifest

    convert_dataset("vqa-med-2019", VQA_MED, tmp_path)
    records = read_manifest(tmp_path / "vqa.jsonl")
    captions = captions_from_category_answers(records)
    by_split = Counter(c.split for c in captions)
    # every train/val image has a plane and an organ answer; a test image has a single question,
    # and those whose only answer is a "no" to a modality question are dropped
    assert by_split["train"] == 3200 and by_split["val"] == 500
    assert 400 < by_split["test"] < 500
    assert len({c.id for c in captions}) == len(captions)
    assert all(c.text.strip(" .;:") and c.text.endswith(".") and ".." not in c.text for c in captions)
    assert all(c.meta["source"] == "vqa-med-2019" for c in captions)
