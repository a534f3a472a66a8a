"""Tables for manuscripts: Table 1 and the prevalence tables as a paper prints them
(n (%), mean (SD), intervals), written as ``.docx`` (python-docx) and ``.xlsx`` (openpyxl)
next to the CSV. They are formatted from the *released* table only (the one the disclosure
step returned), so they hold nothing the CSV does not."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.display import Summary, interval, number
from analysis.outputs import FORMULA_START, atomic_write, inside, require_released
from analysis.statistics import table_one_formatted


@dataclass
class PaperTable(Summary):
    """A formatted table (text cells), its title and footnotes."""

    frame: pd.DataFrame
    title: str
    notes: list[str] = field(default_factory=list)

    @property
    def summary_title(self):
        return self.title

    @property
    def summary_headers(self):
        return tuple(str(c) for c in self.frame.columns)

    def summary_rows(self):
        return [tuple(str(v) for v in row) for row in self.frame.itertuples(index=False)]

    def summary_notes(self):
        return self.notes

    def to_docx(self, path: Path) -> Path:
        from docx import Document
        from docx.shared import Pt

        def write(tmp):
            doc = Document()
            doc.add_paragraph().add_run(self.title).bold = True
            table = doc.add_table(rows=1, cols=len(self.frame.columns))
            table.style = "Table Grid"
            for cell, h in zip(table.rows[0].cells, self.summary_headers, strict=True):
                cell.text = h
                for r in cell.paragraphs[0].runs:
                    r.bold = True
            for row in self.summary_rows():
                for cell, v in zip(table.add_row().cells, row, strict=True):
                    cell.text = v
            for note in self.notes:
                doc.add_paragraph().add_run(note).font.size = Pt(8)
            doc.core_properties.author = "analysis"
            doc.save(tmp)

        return atomic_write(path, write)

    def to_xlsx(self, path: Path) -> Path:
        from openpyxl import Workbook
        from openpyxl.styles import Font

        def write(tmp):
            wb = Workbook()
            ws = wb.active
            ws.title = "table"
            ws.append([self.title])
            ws["A1"].font = Font(bold=True)
            ws.append(list(self.summary_headers))
            for c in ws[2]:
                c.font = Font(bold=True)
            for row in self.summary_rows():
                # text cells: a spreadsheet must not read "12 (3.4%)" or "=..." as anything else
                ws.append([_text(v) for v in row])
            for note in self.notes:
                ws.append([_text(note)])
            for col in ws.columns:
                width = max(len(str(c.value or "")) for c in col[1:]) if len(col) > 1 else 10
                ws.column_dimensions[col[0].column_letter].width = min(60, max(10, width + 2))
            wb.properties.creator = "analysis"
            wb.save(tmp)

        return atomic_write(path, write)


def _text(v: str) -> str:
    return "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v


# ----------------------------------------------------------------------------- formatters
def table_one(t1: pd.DataFrame, label: str) -> PaperTable:
    return PaperTable(
        table_one_formatted(t1),
        f"Table 1. The pain cohort against the rest of the population ({label})",
        [
            "Counts as n (%); age and number of drugs as mean (SD); SMD: standardized mean "
            "difference, pain cohort minus the rest (Austin 2009). 'withheld': below the "
            "disclosure threshold."
        ],
    )


def prevalence(df: pd.DataFrame, key: str, title: str, label: str) -> PaperTable:
    level = df["level"].dropna().iloc[0] if "level" in df and df["level"].notna().any() else 0.95
    method = df["method"].dropna().iloc[0] if "method" in df and df["method"].notna().any() else ""
    rows = []
    for _, r in df.iterrows():
        n = None if pd.isna(r["numerator"]) else int(r["numerator"])
        pct = None if pd.isna(r["pct"]) else float(r["pct"])
        rows.append(
            {
                key: r[key],
                "n (%)": "withheld" if n is None else f"{number(n)} ({number(pct, 1)}%)",
                f"{100 * level:g}% CI (%)": interval(
                    None if pd.isna(r["ci_low"]) else r["ci_low"],
                    None if pd.isna(r["ci_high"]) else r["ci_high"],
                ),
            }
        )
    den = df["denominator"].dropna()
    n_text = number(int(den.iloc[0])) if len(den) else "withheld"
    return PaperTable(
        pd.DataFrame(rows),
        f"{title} (n = {n_text}; {label})",
        [f"Interval: {method} (see the methods). A patient can count in several rows."],
    )


FORMATTERS = {
    "table_one": lambda t, label: table_one(t, label),
    "site_prevalence": lambda t, label: prevalence(
        t, "site", "Pain sites in the pain cohort", label
    ),
    "condition_prevalence": lambda t, label: prevalence(
        t, "condition", "Risk conditions and risk drugs in the pain cohort", label
    ),
}


def write_manuscript_table(released: pd.DataFrame, name: str, folder: Path, label: str):
    """The released table ``name`` as a :class:`PaperTable`, also written as
    ``tables/<name>.docx`` and ``.xlsx``; returns (table, files)."""
    require_released(released, f"the manuscript table {name}")
    if name not in FORMATTERS:
        raise KeyError(f"no manuscript format for {name!r}; known: {', '.join(FORMATTERS)}")
    table = FORMATTERS[name](released, label)
    files = []
    for suffix, writer in ((".docx", table.to_docx), (".xlsx", table.to_xlsx)):
        target = inside(folder, Path(folder) / "tables" / f"{name}{suffix}")
        writer(target)
        files.append(target.name)
    return table, files
