"""The code prefixes of the default risk lists, read from data/codelists (the project's one
source), for the hand-written floor and plain-pandas scripts: the standard library only, so
that neither pays an import of the analysis package."""

import csv
from pathlib import Path

_LISTS = Path(__file__).resolve().parents[1] / "data" / "codelists"


def _prefixes(pattern: str) -> tuple[str, ...]:
    out = []
    for path in sorted(_LISTS.glob(pattern)):
        with path.open(newline="", encoding="utf-8") as fh:
            out += [row["code"].replace(".", "").strip().upper() for row in csv.DictReader(fh)]
    return tuple(out)


RISK_DX = _prefixes("risk_condition_*.csv")
RISK_RX = _prefixes("risk_drug_*.csv")
