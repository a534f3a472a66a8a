"""Code lists: versioned CSV files ``data/codelists/<name>.csv`` with ``code``,
``description`` and ``vocabulary``.

Each list declares its vocabulary (one value for every row; OMOP's vocabulary ids:
``ICD9CM``, ``ICD10``, ``ICD10CM``, ``SNOMED``, ``ATC``) and matches only codes of that
vocabulary: a diagnosis list is applied only when the database's diagnoses are coded in it
(``diagnosis_vocabulary`` of ``dataset.json``, ICD9CM when not said), so that no code of one
vocabulary is ever read by another's list (SNOMED 43878008 is not ICD-9-CM 438). Within its
vocabulary, a recorded code matches an entry when, with dots removed and letters
upper-cased, it starts with the entry's code (so ``428`` matches ``428.0`` and ``4280``;
``B01A`` matches ``B01AC06``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from analysis import paths
from analysis.errors import AnalysisError, nearest_name


def normalise_code(code: str) -> str:
    """Code with dots and surrounding blanks removed, upper-cased: ``428.0`` -> ``4280``."""
    return str(code).replace(".", "").strip().upper()


VOCABULARIES = ("ICD9CM", "ICD10", "ICD10CM", "SNOMED", "ATC")
DEFAULT_DIAGNOSIS_VOCABULARY = "ICD9CM"


@dataclass(frozen=True)
class CodeList:
    name: str
    codes: tuple[str, ...]  # normalised prefixes
    descriptions: tuple[str, ...]
    path: Path
    vocabulary: str = DEFAULT_DIAGNOSIS_VOCABULARY

    def matches(self, code: str) -> bool:
        c = normalise_code(code)
        return any(c.startswith(p) for p in self.codes)


def available_codelists(folder: Path | None = None) -> list[str]:
    folder = Path(folder or paths.CODELISTS)
    return sorted(p.stem for p in folder.glob("*.csv"))


@lru_cache(maxsize=256)
def _read(path: Path) -> CodeList:
    problems = []
    codes, descriptions = [], []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"code", "description", "vocabulary"} - set(reader.fieldnames or [])
            if missing:
                raise AnalysisError(
                    f"Code list {path}: missing column(s) {', '.join(sorted(missing))}; "
                    f"expected a header 'code,description,vocabulary' (vocabulary: one of "
                    f"{', '.join(VOCABULARIES)}, the same on every row)."
                )
            vocabularies = set()
            for i, row in enumerate(reader, start=2):
                code = normalise_code(row["code"] or "")
                vocab = (row["vocabulary"] or "").strip().upper()
                if not code:
                    problems.append(
                        f"{path}, column code, row {i}: expected a code, found an empty value"
                    )
                    continue
                if vocab not in VOCABULARIES:
                    problems.append(
                        f"{path}, column vocabulary, row {i}: expected one of "
                        f"{', '.join(VOCABULARIES)}, found {row['vocabulary']!r}"
                    )
                vocabularies.add(vocab)
                codes.append(code)
                descriptions.append((row["description"] or "").strip())
            if len(vocabularies) > 1:
                problems.append(
                    f"{path}, column vocabulary: one vocabulary per list, found "
                    f"{', '.join(sorted(vocabularies))}"
                )
    except UnicodeDecodeError as exc:
        raise AnalysisError(f"Code list {path} is not UTF-8 text: {exc}") from None
    if problems:
        raise AnalysisError("\n".join(problems))
    if not codes:
        raise AnalysisError(f"Code list {path} holds no codes.")
    return CodeList(path.stem, tuple(codes), tuple(descriptions), path, vocabularies.pop())


def load_codelist(name: str, folder: Path | None = None) -> CodeList:
    """The code list called ``name`` (file stem), or a clear error listing the known ones."""
    folder = Path(folder or paths.CODELISTS)
    path = folder / f"{name}.csv"
    if not path.exists():
        known = available_codelists(folder)
        hint = nearest_name(name, known)
        raise AnalysisError(
            f"Unknown code list {name!r}: no file {path}."
            + (f" Did you mean {hint!r}?" if hint else "")
            + f" Known lists: {', '.join(known)}."
        )
    return _read(path.resolve())
