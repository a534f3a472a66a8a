"""The release sheet of a batch on data not marked synthetic: what an output checker needs
to review a release request (every file, whether it is aggregate-only, the definitions
and denominators behind each table, the disclosure rule and the cells it withheld)."""

from __future__ import annotations

import json
import os
from pathlib import Path

TABLE_NOTES = {
    "sex": "patients by sex; denominator: all patients",
    "age_summary": "age in completed years at the index date, overall, by sex and by age band; n per group",
    "age_sex_pyramid": "patients by 5-year age group and sex; partitions all patients",
    "age_by_sex_counts": "patients by single year of age and sex; partitions all patients",
    "table_one": "pain cohort against the rest: counts (%), means (SD), SMD; denominators: the two groups",
    "site_prevalence": "pain-cohort patients with a qualifying episode per site; denominator: the pain cohort",
    "condition_prevalence": "pain-cohort patients per risk-condition group and risk drug; denominator: the pain cohort",
    "condition_combinations": "pain-cohort patients per exact combination of risk groups; partitions the pain cohort",
    "risk_condition_odds_ratios": "logistic regression (grouped binomial) of a risk condition in the pain cohort",
    "attrition": "all patients -> pain cohort -> risk condition / target -> candidates; each share of the step it is drawn from",
    "eligibility_estimate": "expected candidates from the released (rounded) target and population counts",
    "eligibility_distribution": "Monte Carlo draws of the estimate per GP list (from released counts)",
    "sensitivity_grid": "target counts and estimates per grid cell (from released counts)",
    "tornado": "one-at-a-time ranges of the estimate", "heatmap_elderly_age_benefit": "estimate per cell",
    "reproduction": "published against recomputed figures", "consistency_audit": "arithmetic of the published figures (no data)",
    "completeness": "records with a value per column", "plausibility": "records per data-quality check",
    "duplicates": "exact duplicate records per table", "code_coverage": "records matched by the code lists",
    "unmatched_codes": "diagnosis codes in no code list, records per code",
}


def write_release_sheet(batch) -> Path:
    out: Path = batch.out
    lines = [f"# Release sheet: batch {batch.name}", "",
             "Every output of this batch, for an output checker. All files hold aggregates only "
             "(counts, shares, means, model estimates); no patient-level row, identifier or exact date "
             "is written (a test plants marker values and scans every output).", ""]
    for d in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        man = d / "manifest.json"
        m = json.loads(man.read_text()) if man.exists() else {}
        disc_path = d / "disclosure.json"
        disc = json.loads(disc_path.read_text()) if disc_path.exists() else {}
        lines += [f"## {d.name}", "",
                  f"- notebook `{m.get('notebook')}`, scenario `{m.get('scenario')}`, status {m.get('status')}",
                  f"- release: **{m.get('release', '?')}**",
                  f"- disclosure rule: {disc.get('description', 'none recorded')}", "",
                  "| file | aggregate-only | definitions and denominators | cells withheld |", "|---|---|---|---|"]
        for f in sorted(p for p in d.rglob("*") if p.is_file()):
            rel = f.relative_to(out).as_posix()
            stem = f.stem
            note = TABLE_NOTES.get(stem, "") if f.parent.name in ("tables", "figures") else ""
            withheld = disc.get("suppressed_cells", {}).get(stem, "") if f.parent.name == "tables" else ""
            lines.append(f"| {rel} | yes | {note} | {withheld} |")
        lines.append("")
    target = out / "release.md"
    tmp = target.with_name(".release.md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, target)
    return target
