"""The output-table registry: every table a run saves is declared here once.

A declaration says what the table holds (its columns), which columns are counts and of
what (patients or records, and which patient count governs a count of records), what
derives from each count (withheld with it), which percentages and intervals are
recomputed from released counts, which rows partition a total published elsewhere, which
rows exist only where patients exist (their key is itself disclosive), the note for the
release sheet and the key figure for the batch index. The disclosure step
(:mod:`analysis.outputs.disclosure`), the release sheet and the index all read it.

Under every rule, a table that is not declared, or does not match its declaration, is
refused with its name and how to declare it: nothing leaves unprotected by omission.

A researcher declares a table of their own next to their notebook::

    from analysis.outputs import declare_table
    declare_table("visits_by_band", columns=["band", "patients", "pct"],
                  counts={"patients": "patients"},
                  pct={"pct": ("patients", "column_total")},
                  note="patients by age band; partitions the pain cohort", partition=True)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from analysis.errors import AnalysisError

NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")  # matched whole (fullmatch)


class UndeclaredTable(AnalysisError):
    """A table that is not in the registry, or does not match its declaration."""


@dataclass(frozen=True)
class TableSpec:
    """The declaration of one output table.

    name : file stem (``tables/<name>.csv``): lower-case letters, digits and ``_``.
    columns : the columns the table holds, every one (order free).
    counts : count column -> its unit: ``"patients"``, or ``"records:<col>"`` for a count
        of records whose disclosure is governed by the patient count in column ``<col>``,
        or ``"records"`` for a count of records with no patient count (protected as if
        each record were a patient). Counts below the threshold are withheld, the others
        rounded.
    derived : count column -> columns withheld with it (the default: every non-count,
        non-key column of the row).
    keys : columns that name a row (text labels); never changed.
    pct : percentage column -> (numerator column, denominator), recomputed from released
        counts; the denominator is a column name, ``"column_total"`` (the released total of
        the numerator column, for a partition) or ``"from_pct"`` (the total implied by
        the unrounded percentage, released rounded).
    ci : (low column, high column, numerator, denominator column) of proportions whose
        interval is recomputed from the released counts.
    withhold : columns always withheld under a rule (extremes, intervals of means).
    round_to_decimals : column -> decimals under a rule.
    partition : ``True`` when the rows of each count column partition a total published
        elsewhere; ``(key column, [prefixes])`` for several partitions in one table.
    rows_exist_only_with_patients : a row is present only where patients are (ages,
        codes, combinations): a row whose counts are all withheld is dropped (its key
        would tell that such patients exist) and the number dropped is recorded.
    top_code : (column, value, label): rows at or above ``value`` of a numeric key are
        merged into one row labelled ``label`` before protection (open-ended band).
    extra_columns : ``None``, or ``"labels"`` (further text/boolean columns allowed: the
        varied parameters of a grid, condition names) or ``"estimates"`` (further numeric
        columns that are estimates computed from released counts: a pivot of the grid).
    protector : a function (table, rule, params) -> (table, cells withheld) for tables
        whose protection is not column-wise (Table 1, the regression, the attrition).
    note : what the table holds and its denominators, for the release sheet.
    key_figure : rows (list of dicts of strings, as read back from the CSV) -> one line for
        the batch index, or None.
    """

    name: str
    columns: tuple[str, ...]
    counts: dict[str, str] = field(default_factory=dict)
    derived: dict[str, tuple[str, ...]] = field(default_factory=dict)
    keys: tuple[str, ...] = ()
    pct: dict[str, tuple[str, str]] = field(default_factory=dict)
    ci: tuple[tuple[str, str, str, str], ...] = ()
    withhold: tuple[str, ...] = ()
    round_to_decimals: dict[str, int] = field(default_factory=dict)
    partition: bool | tuple = False
    rows_exist_only_with_patients: bool = False
    top_code: tuple | None = None
    extra_columns: str | None = None
    protector: Callable | None = None
    note: str = ""
    key_figure: Callable | None = None

    def __post_init__(self):
        if not NAME.fullmatch(self.name):
            raise AnalysisError(
                f"Output table name {self.name!r} must be lower-case letters, digits "
                "and _ (it becomes a file name)."
            )
        cols = set(self.columns)
        named = (
            set(self.counts)
            | set(self.keys)
            | set(self.pct)
            | set(self.withhold)
            | set(self.derived)
        )
        named |= {c for d in self.derived.values() for c in d}
        named |= {c for t in self.ci for c in t}
        unknown = named - cols
        if unknown:
            raise AnalysisError(
                f"Output table {self.name!r}: the declaration names columns that are not "
                f"among its columns: {', '.join(sorted(unknown))}."
            )
        for c, unit in self.counts.items():
            if unit not in ("patients", "records") and not (
                unit.startswith("records:") and unit[8:] in cols
            ):
                raise AnalysisError(
                    f"Output table {self.name!r}: count column {c!r} has unit {unit!r}; "
                    "expected 'patients', 'records' or 'records:<patient count column>'."
                )

    def check(self, df) -> None:
        """Refuse a table that does not match this declaration (names the difference)."""
        import pandas as pd

        have = [str(c) for c in df.columns]
        missing = [c for c in self.columns if c not in have]
        extra = [c for c in have if c not in self.columns and c != "disclosure"]
        bad_extra = []
        for c in extra:
            s = df[c]
            if self.extra_columns == "labels" and (
                s.dtype == bool or s.dtype == object or isinstance(s.dtype, pd.StringDtype)
            ):
                if s.dtype == object and any(not isinstance(v, str | bool) for v in s.dropna()):
                    bad_extra.append(c)
                continue
            if self.extra_columns == "estimates" and pd.api.types.is_float_dtype(s):
                continue
            bad_extra.append(c)
        if missing or bad_extra:
            parts = []
            if missing:
                parts.append(f"missing declared column(s) {', '.join(missing)}")
            if bad_extra:
                parts.append(f"undeclared column(s) {', '.join(bad_extra)}")
            raise UndeclaredTable(
                f"Table {self.name!r} does not match its declaration: {'; '.join(parts)}. Nothing "
                f"was "
                f"written. Change the table, or its declaration (analysis.outputs.registry, or "
                f"declare_table('{self.name}', ...) in your notebook)."
            )


_REGISTRY: dict[str, TableSpec] = {}


def declare(spec: TableSpec) -> TableSpec:
    _REGISTRY[spec.name] = spec
    return spec


def declare_table(name: str, columns, *, counts=None, replace: bool = False, **kw) -> TableSpec:
    """Declare an output table of your own (see the module docstring); returns its spec.
    A name already declared by the project is refused unless ``replace``."""
    if name in _REGISTRY and not replace:
        raise AnalysisError(f"Output table {name!r} is already declared; choose another name.")
    tup = {k: tuple(v) for k, v in kw.items() if k in ("keys", "withhold") and v is not None}
    kw.update(tup)
    if "ci" in kw:
        kw["ci"] = tuple(tuple(x) for x in kw["ci"])
    if "derived" in kw:
        kw["derived"] = {k: tuple(v) for k, v in kw["derived"].items()}
    if "pct" in kw:
        kw["pct"] = {k: tuple(v) for k, v in kw["pct"].items()}
    return declare(TableSpec(name=name, columns=tuple(columns), counts=dict(counts or {}), **kw))


def spec_for(name: str) -> TableSpec:
    """The declaration of ``name``; an undeclared table is refused, under every rule."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise UndeclaredTable(
            f"Output table name {name!r} must be lower-case letters, digits and _."
        )
    spec = _REGISTRY.get(name)
    if spec is None:
        raise UndeclaredTable(
            f"Table {name!r} is not declared, so it cannot be released. Nothing was written. "
            f"Declare it "
            f"once, next to your notebook, e.g.\n"
            f"    from analysis.outputs import declare_table\n"
            f"    declare_table({name!r}, columns=[...], counts={{'n': 'patients'}}, note='what "
            f"it holds')\n"
            f"(see README, 'Your own tables')."
        )
    return spec


def declared() -> dict[str, TableSpec]:
    return dict(_REGISTRY)
