"""The release sheet of a batch on data not marked synthetic: what an output checker needs
to review a release request: every file and what it is (a declared table that passed the
disclosure step, a figure drawn from such tables, a record of parameters), the
definitions and denominators behind each table (from the table registry), the rule and
the cells it withheld, and the pairs of runs a checker must compare because they differ
in one parameter or one data source (differencing: two released counts whose difference
is a small group)."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

from analysis.files import atomic_write_text
from analysis.outputs.disclosure import RULES
from analysis.outputs.registry import declared

RECORDS = {
    "manifest.json": "parameters, fingerprints and package versions (no data values)",
    "disclosure.json": "the rule in force and the cells it withheld, per table",
    "run.log": "the run's log (cell progress; no data values)",
    "README.txt": "how to see why the run failed (no data values)",
    "results.csv": "the run's figures as one long table, released under the run's rule "
    "(the same values as its tables; withheld values empty and marked)",
}


def _md(text) -> str:
    """A value for a Markdown table cell: no pipes, no HTML."""
    text = str(text).replace("->", "→")  # an arrow reads as one, not as "-&gt;"
    return text.replace("|", "/").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def _file_row(f: Path, out: Path, disc: dict, notebook: str) -> tuple[str, str, str, str]:
    rel = f.relative_to(out).as_posix()
    tables, figures = disc.get("tables", {}), disc.get("figures", {})
    if f.parent.name == "tables" and f.suffix == ".csv":
        t = tables.get(f.stem)
        if t is None:
            return rel, "**NO**: not written by the disclosure step; check by hand", "", ""
        return (
            rel,
            "yes: declared table, protected",
            t.get("note", ""),
            f"{t.get('cells_withheld', 0)} cells; {t.get('rows_left_out', 0)} rows left out",
        )
    if f.parent.name == "figures":
        if f.stem in figures:
            return rel, "yes: figure drawn from the released tables", "", ""
        return rel, "**NO**: a figure the run did not record; check by hand", "", ""
    if f.parent.name == "tables" and f.suffix in (".docx", ".xlsx"):
        t = tables.get(f.stem) or {}
        if f.name in t.get("manuscript", []):
            return rel, "yes: the released table formatted for a manuscript", t.get("note", ""), ""
        return rel, "**NO**: not written by the disclosure step; check by hand", "", ""
    if f.name in RECORDS:
        return rel, "yes", RECORDS[f.name], ""
    if f.name in (f"{notebook}.ipynb", f"{notebook}.html"):
        return rel, "yes: shows the released tables and figures", "", ""
    return rel, "**NO**: a file the batch does not know; check by hand", "", ""


def _read(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _pairs(runs: list[tuple[Path, dict]]) -> list[tuple[Path, Path, str]]:
    """Pairs of runs of one notebook that differ in exactly one parameter (same data
    source) or only in their data source (same scenario)."""
    out = []
    for (d1, m1), (d2, m2) in itertools.combinations(runs, 2):
        if m1.get("notebook") != m2.get("notebook"):
            continue
        p1, p2 = m1.get("resolved_parameters", {}), m2.get("resolved_parameters", {})
        if m1.get("data_source") == m2.get("data_source"):
            diff = [k for k in sorted(set(p1) | set(p2)) if p1.get(k) != p2.get(k)]
            if len(diff) == 1:
                out.append(
                    (d1, d2, f"differ in {diff[0]} only ({p1.get(diff[0])} / {p2.get(diff[0])})")
                )
        elif p1 == p2:
            out.append(
                (
                    d1,
                    d2,
                    f"same parameters, data sources {m1.get('data_source')} / "
                    f"{m2.get('data_source')}",
                )
            )
    return out


def _differences(d1: Path, d2: Path, threshold: int, step: int) -> list[str]:
    """Count cells of two runs that a checker must look at: withheld in one run and
    released in the other (a row of one run left out of the other, in tables that drop
    withheld rows); released in both with a difference below the threshold; or,
    under rounding, a change of one rounding step (when the runs differ only slightly,
    such a change can pin the exact count at the rounding boundary)."""

    specs = declared()
    found = []
    for t1 in sorted((d1 / "tables").glob("*.csv")):
        t2 = d2 / "tables" / t1.name
        spec = specs.get(t1.stem)
        if not t2.exists() or spec is None or not spec.counts:
            continue
        r1, r2 = _read(t1), _read(t2)
        keys = [k for k in spec.keys if r1 and k in r1[0]]
        if spec.extra_columns == "labels" and r1:  # a grid's varied parameters name its rows
            keys += [c for c in r1[0] if c not in spec.columns and c != "disclosure"]
        index2 = {tuple(r.get(k) for k in keys): r for r in r2}
        if len(index2) < len(r2) or len({tuple(r.get(k) for k in keys) for r in r1}) < len(r1):
            found.append(f"{t1.stem}: rows not matched by {', '.join(keys)}; compare by hand")
            continue
        if spec.rows_exist_only_with_patients and keys:
            # a row left out (withheld) in one run and released in the other
            index1 = {tuple(r.get(k) for k in keys): r for r in r1}
            for key in sorted(index1.keys() ^ index2.keys(), key=str):
                where = ", ".join(f"{k}={v}" for k, v in zip(keys, key, strict=True))
                found.append(f"{t1.stem} ({where}): a row in one run, left out of the other")
        for row in r1:
            other = index2.get(tuple(row.get(k) for k in keys))
            if other is None:
                continue
            where = ", ".join(f"{k}={row.get(k)}" for k in keys) or "row"
            for c in spec.counts:
                a, b = _float(row.get(c)), _float(other.get(c))
                if (a is None) != (b is None):
                    found.append(
                        f"{t1.stem}.{c} ({where}): withheld in one, {a if a is not None else b:g} "
                        f"in the other"
                    )
                elif a is not None and b is not None and a != b:
                    if abs(a - b) < threshold:
                        found.append(
                            f"{t1.stem}.{c} ({where}): {a:g} vs {b:g}, a difference below "
                            f"{threshold}"
                        )
                    elif step > 1 and abs(a - b) == step:
                        found.append(f"{t1.stem}.{c} ({where}): {a:g} vs {b:g}, one rounding step")
    return found


def _float(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if x != x else x


def write_release_sheet(batch) -> Path:
    out: Path = batch.out
    lines = [
        f"# Release sheet: batch {_md(batch.name)}",
        "",
        "Every output of this batch, for an output checker. Tables are declared once "
        "(`analysis.outputs.registry`) and written only through the disclosure step; an "
        "undeclared table is refused. No patient-level row, identifier or exact date is written "
        "(a release test plants marker values and scans every output).",
        "",
    ]
    batch_files = {
        "index.html": "the batch index: key figures from the released tables",
        "methods.md": "methods and results in words, from released counts only",
        "methods.html": "the same as methods.md, as a page",
    }
    lines += [
        "## The batch folder",
        "",
        "| file | aggregate-only | what it holds |",
        "|---|---|---|",
    ]
    for name, what in batch_files.items():
        if (out / name).exists():
            lines.append(f"| {name} | yes | {what} |")
    lines.append("")
    runs = []
    for d in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        man = d / "manifest.json"
        m = json.loads(man.read_text()) if man.exists() else {}
        disc_path = d / "disclosure.json"
        disc = json.loads(disc_path.read_text()) if disc_path.exists() else {}
        runs.append((d, m, disc))
        lines += [
            f"## {_md(d.name)}",
            "",
            f"- notebook `{_md(m.get('notebook'))}`, scenario `{_md(m.get('scenario'))}`, "
            f"data source `{_md(m.get('data_source'))}`, status {_md(m.get('status'))}",
            f"- release: **{_md(m.get('release', '?'))}**",
            f"- disclosure rule: {_md(disc.get('description', 'none recorded'))}",
            "",
            "| file | aggregate-only | definitions and denominators | withheld |",
            "|---|---|---|---|",
        ]
        for f in sorted(p for p in d.rglob("*") if p.is_file()):
            lines.append(
                "| "
                + " | ".join(_md(x) for x in _file_row(f, out, disc, m.get("notebook", "")))
                + " |"
            )
        lines.append("")
        lines += _audit_lines(disc.get("audit"))
    ok = [(d, m) for d, m, _ in runs if m.get("status") == "ok"]
    pairs = _pairs(ok)
    lines += [
        "## Pairs a checker must compare",
        "",
        "Runs of one notebook that differ in one parameter, or only in their data source: the "
        "difference of two released counts can reveal a small group. Listed for each pair: "
        "counts withheld in one run and released in the other (and rows, such as a practice, "
        "left out of one run and released in the other), counts that differ by less than the "
        "threshold, and, under rounding, counts that differ by one rounding step (when the two "
        "runs differ only slightly, for example by one day of the index date, such a step can "
        "pin the exact count at the rounding boundary). Several runs that differ step by step "
        "in one parameter (an index-date sweep) should not be released together. Runs of the "
        "same data and definitions (any notebooks; elderly age, severity, episodes and code "
        "lists may differ) were also audited together, each with every number released "
        "before it into this folder (listed above per run); runs with another index date, "
        "window, population, sites or causes count other variables and are not combined by "
        "the audit: compare them here.",
        "",
    ]
    if not pairs:
        lines.append("No runs of one notebook that differ in one parameter only.")
    for d1, d2, why in pairs:
        disc = next((x for d, _, x in runs if d == d1), {})
        threshold, step = _threshold(disc), _step(disc)
        found = _differences(d1, d2, threshold, step) if threshold else []
        lines.append(
            f"- `{_md(d1.name)}` and `{_md(d2.name)}`: {_md(why)}; "
            + (
                f"**{len(found)} count(s) to check**: "
                + "; ".join(_md(x) for x in found[:20])
                + (f"; and {len(found) - 20} more" if len(found) > 20 else "")
                if found
                else "no count withheld in one and released in the other, none differing "
                "by less than the threshold or by one rounding step"
            )
        )
    lines.append("")
    return atomic_write_text(out / "release.md", "\n".join(lines) + "\n", within=out)


def _audit_lines(audit: dict | None) -> list[str]:
    """What the disclosure audit of a run did, for the checker (nothing without one)."""
    if not audit:
        return []
    lines = []
    lines.append(f"Disclosure audit of this run's released numbers: {_md(audit['method'])}.")
    earlier = audit.get("earlier_runs") or []
    lines.append(
        "- audited with what earlier runs on the same data released into this reports "
        f"folder: {_md(', '.join(earlier))}"
        if earlier
        else "- no earlier run on the same data released into this reports folder"
    )
    if audit.get("earlier_numbers_left_aside"):
        lines.append(
            f"- **to check**: {audit['earlier_numbers_left_aside']} number(s) of earlier "
            "runs about pain sites under another severity were not combined"
        )
    lines += [
        f"- withheld by the audit: {_md(w['withheld'])} ({_md(w['why'])})"
        for w in audit.get("withheld", [])
    ] or ["- the audit withheld nothing beyond the rule."]
    lines += [
        f"- **to check**: {_md(u['what'])} (from numbers released before table "
        f"{_md(u['table'])}; no number of that table could prevent it)"
        for u in audit.get("follows_from_earlier_releases", [])
    ]
    lines.append("")
    return lines


def _step(disc: dict) -> int:
    import re

    m = re.search(r"rounded to the nearest (\d+)", str(disc.get("description", "")))
    return int(m.group(1)) if m else 1


def _threshold(disc: dict) -> int:
    name = str(disc.get("rule", "off"))
    desc = str(disc.get("description", ""))
    import re

    m = re.search(r"counts below (\d+) withheld", desc)
    if m:
        return int(m.group(1))
    base = RULES.get(name.split(" ")[0])
    return base.threshold if base else 0
