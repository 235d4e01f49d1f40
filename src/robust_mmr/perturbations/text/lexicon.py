"""The curated lexicons (abbreviations, synonyms): loading, validation, phrase lookup.

Files (tab-separated, UTF-8, "#" starts a comment line, first non-comment line is the header):

- ``lexicons/abbreviations.tsv``: ``abbreviation  expansion  case`` — one abbreviation per line,
  unique ignoring case. ``case`` is ``any`` (matched in any case: "ct" and "CT" both expand) or
  ``exact`` (matched only as written, for abbreviations whose lower-case form is an ordinary word or
  another abbreviation: "US" is ultrasound, "us" is not; "MR" is not "Mr."). Expansions are always
  matched in any case. Several abbreviations may share an expansion (bilat, b/l -> bilateral).
- ``lexicons/synonyms.tsv``: ``term  synonyms`` — synonyms separated by "|"; the relation must be
  symmetric (if b is listed for a, a is listed for b) and terms are unique ignoring case. Only
  meaning-preserving pairs with the same part of speech belong here.

Negation safety is checked on load: an abbreviation that is itself a negation cue (w/o) must expand
to a phrase with the same number of cues, and synonyms must carry the same number of cues. An
abbreviation that is not a cue but whose expansion holds one (NAD = "no abnormality detected") is a
*negating abbreviation* and counts as a negation (see :mod:`.negation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from robust_mmr.errors import InputError
from robust_mmr.perturbations.text.cues import count_direct_cues, direct_cue_spans

ABBREVIATION_COLUMNS = ("abbreviation", "expansion", "case")
SYNONYM_COLUMNS = ("term", "synonyms")
CASE_MODES = ("any", "exact")
SYNONYM_SEPARATOR = "|"


@dataclass(frozen=True)
class Abbreviation:
    """One lexicon line: ``short`` as written, its ``expansion``, and whether case must match."""

    short: str
    expansion: str
    exact_case: bool


@dataclass(frozen=True)
class PhraseEntry:
    """A phrase that can be replaced: its written ``source`` and the ``replacements`` to pick from."""

    source: str
    replacements: tuple[str, ...]
    exact_case: bool = False


class PhraseTable:
    """Phrase lookup by lower-cased word tuple; entries with ``exact_case`` match only as written."""

    def __init__(self, entries: list[PhraseEntry]):
        self._entries: dict[tuple[str, ...], list[PhraseEntry]] = {}
        self._lengths: dict[str, list[int]] = {}
        for entry in entries:
            key = _key(entry.source)
            self._entries.setdefault(key, []).append(entry)
            self._lengths.setdefault(key[0], []).append(len(key))
        for lengths in self._lengths.values():
            lengths.sort(reverse=True)

    def lengths_from(self, first_word: str) -> list[int]:
        """Word counts of the phrases starting with this word (any case), longest first."""
        return self._lengths.get(first_word.lower(), [])

    def lookup(self, cores: list[str]) -> PhraseEntry | None:
        """The entry whose source equals these word cores, or None."""
        for entry in self._entries.get(tuple(c.lower() for c in cores), ()):
            if not entry.exact_case or " ".join(cores) == entry.source:
                return entry
        return None


def _key(phrase: str) -> tuple[str, ...]:
    return tuple(phrase.lower().split())


def _default_path(filename: str) -> Path:
    return Path(str(resources.files("robust_mmr.perturbations.text") / "lexicons" / filename))


def _read_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of every data line; raises InputError on a bad header or width."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise InputError(f"cannot read lexicon {path}: {err.strerror or err}") from err
    rows = [(n, line.split("\t")) for n, line in enumerate(lines, 1) if line.strip() and not line.startswith("#")]
    if not rows or tuple(rows[0][1]) != columns:
        raise InputError(f"{path}: the first non-comment line must be the header {'<TAB>'.join(columns)}")
    for n, fields in rows[1:]:
        if len(fields) != len(columns) or not all(f.strip() for f in fields):
            raise InputError(f"{path}:{n}: expected {len(columns)} non-empty tab-separated fields ({', '.join(columns)})")
    return [(n, [f.strip() for f in fields]) for n, fields in rows[1:]]


def load_abbreviations(path: str | Path | None = None) -> tuple[Abbreviation, ...]:
    """Read and validate an abbreviation lexicon (default: the packaged one)."""
    path = Path(path) if path is not None else _default_path("abbreviations.tsv")
    seen: dict[str, int] = {}
    entries = []
    for n, (short, expansion, case) in _read_rows(path, ABBREVIATION_COLUMNS):
        if case not in CASE_MODES:
            raise InputError(f"{path}:{n}: case {case!r} is not valid; choose one of {', '.join(CASE_MODES)}")
        if " " in short:
            raise InputError(f"{path}:{n}: abbreviation {short!r} must be a single word")
        if short.lower() in seen:
            raise InputError(f"{path}:{n}: abbreviation {short!r} duplicates line {seen[short.lower()]} (keys are unique ignoring case)")
        seen[short.lower()] = n
        if direct_cue_spans([short]) and count_direct_cues(expansion) != 1:
            raise InputError(f"{path}:{n}: {short!r} is a negation cue but its expansion {expansion!r} does not hold exactly one")
        entries.append(Abbreviation(short, expansion, case == "exact"))
    return tuple(entries)


def load_synonyms(path: str | Path | None = None) -> dict[str, tuple[str, ...]]:
    """Read and validate a synonym lexicon (default: the packaged one): term -> synonyms."""
    path = Path(path) if path is not None else _default_path("synonyms.tsv")
    table: dict[str, tuple[str, ...]] = {}
    lines: dict[str, int] = {}
    for n, (term, synonyms) in _read_rows(path, SYNONYM_COLUMNS):
        options = tuple(s.strip() for s in synonyms.split(SYNONYM_SEPARATOR))
        if term.lower() in lines:
            raise InputError(f"{path}:{n}: term {term!r} duplicates line {lines[term.lower()]} (terms are unique ignoring case)")
        if any(not s or s.lower() == term.lower() for s in options):
            raise InputError(f"{path}:{n}: synonyms of {term!r} must be non-empty and differ from the term")
        for synonym in options:
            if count_direct_cues(synonym) != count_direct_cues(term):
                raise InputError(f"{path}:{n}: {term!r} and {synonym!r} differ in negation cues; synonyms must keep negation")
        lines[term.lower()] = n
        table[term] = options
    lowered = {t.lower(): {s.lower() for s in syns} for t, syns in table.items()}
    for term, synonyms in lowered.items():
        for synonym in synonyms:
            if term not in lowered.get(synonym, ()):
                raise InputError(f"{path}:{lines[term]}: {synonym!r} is a synonym of {term!r} but not the reverse; the table must be symmetric")
    return table


@cache
def default_abbreviations() -> tuple[Abbreviation, ...]:
    return load_abbreviations()


@cache
def abbreviation_to_expansion() -> PhraseTable:
    """Abbreviation -> its expansion (the ``expand`` direction)."""
    return PhraseTable([PhraseEntry(a.short, (a.expansion,), a.exact_case) for a in default_abbreviations()])


@cache
def expansion_to_abbreviation() -> PhraseTable:
    """Expansion -> the abbreviations that share it (the ``abbreviate`` direction)."""
    shorts: dict[str, list[str]] = {}
    written: dict[str, str] = {}
    for a in default_abbreviations():
        shorts.setdefault(a.expansion.lower(), []).append(a.short)
        written.setdefault(a.expansion.lower(), a.expansion)
    return PhraseTable([PhraseEntry(written[k], tuple(v)) for k, v in shorts.items()])


@cache
def synonym_table() -> PhraseTable:
    return PhraseTable([PhraseEntry(term, synonyms) for term, synonyms in load_synonyms().items()])
