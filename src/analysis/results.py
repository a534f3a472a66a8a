"""Results that travel: a run's figures as one long analysis-results table, and the
combination of several sites' report folders from those tables alone.

``results.csv`` (one per run) has the columns :data:`COLUMNS`: ``group`` is ``all`` for the
study's figures (``python -m analysis figures``), ``practice`` for a practice's counts
(``stratum`` = its id) and ``pooled`` for the pooled estimate; ``variable`` is the figure id,
``estimate`` what kind of number ``value`` is (count, percent, mean...). Every value is the
released one under the run's disclosure rule (``disclosure``: ``released``, ``withheld`` or
``no rule``), so the table holds nothing the other outputs do not.

``python -m analysis combine FOLDER... --into FOLDER`` reads only these tables (never a patient
row) and the runs' manifests (their parameters), and writes a practices table, the pooled
estimate, a funnel and a forest plot and an index page across sites.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

COLUMNS = (
    "run",
    "group",
    "stratum",
    "variable",
    "estimate",
    "value",
    "ci_low",
    "ci_high",
    "method",
    "numerator",
    "denominator",
    "disclosure",
)

# parameters that do not change what a site's counts mean
_NOT_DEFINITIONS = {
    "disclosure",
    "disclosure_threshold",
    "disclosure_rounding",
    "confidence_level",
    "ci_method",
    "pool_method",
    "monte_carlo_draws",
    "seed",
    "gp_list_size",
    "benefit_fraction",
    "benefit_low",
    "benefit_high",
    "benefit_distribution",
    "benefit_beta_a",
    "benefit_beta_b",
}


def _kind(fid: str) -> str:
    if fid.endswith(".n") or fid.startswith("excluded."):
        return "count"
    if "pct" in fid:
        return "percent"
    if fid.endswith(("_mean",)):
        return "mean"
    if fid.endswith("_sd"):
        return "sd"
    if fid.endswith(("_min", "_max", "_median", "_q1", "_q3")):
        return "age, years"
    if fid == "candidates.n":
        return "expected count"
    if fid == "candidates.per_1000":
        return "rate per 1000"
    if fid.startswith("candidates.") and "gp_list" in fid:
        return "expected per GP list"
    return "value"


def figures_rows(run: str, figures: list[dict], rule, ci_method: str) -> list[dict]:
    """The study's figures (already released under ``rule``) as result rows."""
    status = (lambda f: "withheld" if f.get("value") is None else "released") if rule else None
    rows = []
    for f in figures:
        rows.append(
            {
                "run": run,
                "group": "all",
                "stratum": "",
                "variable": f["id"],
                "estimate": _kind(f["id"]),
                "value": f.get("value"),
                "ci_low": f.get("ci_low"),
                "ci_high": f.get("ci_high"),
                "method": (f.get("interval") or ci_method) if f.get("ci_low") is not None else "",
                "numerator": f.get("numerator"),
                "denominator": f.get("denominator"),
                "disclosure": status(f) if status else "no rule",
            }
        )
    return rows


def practice_rows(run: str, table: pd.DataFrame, pooled: dict | None, rule, ci_method: str):
    """A practices table (released) and its pooled estimate as result rows."""
    status = "released" if rule else "no rule"
    rows = []
    for r in table.itertuples(index=False):
        base = {"run": run, "group": "practice", "stratum": r.practice_id, "disclosure": status}
        for var, kind, value in (
            ("population.n", "count", r.population_n),
            ("pain.n", "count", r.pain_n),
            ("target.n", "count", r.target_n),
        ):
            rows.append({**base, "variable": var, "estimate": kind, "value": value})
        rows.append(
            {
                **base,
                "variable": "target.pct_of_population",
                "estimate": "percent",
                "value": r.target_pct,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
                "method": ci_method,
                "numerator": r.target_n,
                "denominator": r.population_n,
            }
        )
        rows.append(
            {
                **base,
                "variable": "candidates.per_gp_list",
                "estimate": "expected per GP list",
                "value": r.per_gp_list,
                "ci_low": r.per_gp_list_low,
                "ci_high": r.per_gp_list_high,
                "method": "eligibility interval of the expectation",
            }
        )
    if pooled:
        rows.append(
            {
                "run": run,
                "group": "pooled",
                "stratum": f"{int(pooled['practices'])} practices",
                "variable": "target.pct_of_population",
                "estimate": "percent",
                "value": pooled["estimate"],
                "ci_low": pooled["ci_low"],
                "ci_high": pooled["ci_high"],
                "method": pooled["method"],
                "disclosure": status,
            }
        )
    return rows


def write_results(rows: list[dict], target: Path) -> Path:
    from analysis.outputs import write_csv

    return write_csv(pd.DataFrame(rows, columns=list(COLUMNS)), target)


# ----------------------------------------------------------------------------- combine
def read_site(folder: Path) -> dict:
    """One site's results: its units (practices when it has a practices run, else the site
    as one unit) with released counts, and the definitions its runs used."""
    from analysis.errors import AnalysisError

    files = sorted(Path(folder).rglob("results.csv"))
    if not files:
        raise AnalysisError(
            f"{folder}: no results.csv (a report folder written by a batch of this version)."
        )
    practices, overall, params, rules = {}, {}, {}, set()
    for f in files:
        man = f.parent / "manifest.json"
        m = json.loads(man.read_text()) if man.exists() else {}
        if m.get("status") not in (None, "ok"):
            continue
        p = m.get("resolved_parameters") or {}
        with f.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        for r in rows:
            if r["disclosure"] not in ("no rule",):
                rules.add(r["disclosure"])
            if r["group"] == "practice" and r["variable"] in ("population.n", "pain.n", "target.n"):
                practices.setdefault(r["stratum"], {})[r["variable"]] = _int(r["value"])
                params.setdefault("practices", p)
            elif r["group"] == "all" and r["variable"] in ("population.n", "pain.n", "target.n"):
                overall.setdefault(r["variable"], _int(r["value"]))
                params.setdefault("all", p)
    name = Path(folder).name
    if practices:
        units = {f"{name}/{k}": v for k, v in sorted(practices.items())}
        used = params["practices"]
    else:
        units = {name: overall}
        used = params.get("all", {})
    defs = {k: v for k, v in used.items() if k not in _NOT_DEFINITIONS}
    return {"name": name, "units": units, "definitions": defs, "parameters": used}


def _int(v):
    return None if v in ("", None) else int(round(float(v)))


def different_definitions(sites: list[dict]) -> list[str]:
    """Parameters whose values differ between sites (those that change what is counted)."""
    names = sorted(set().union(*(s["definitions"] for s in sites)))
    out = []
    for n in names:
        values = {json.dumps(s["definitions"].get(n), sort_keys=True) for s in sites}
        if len(values) > 1:
            shown = "; ".join(f"{s['name']}: {s['definitions'].get(n)!r}" for s in sites)
            out.append(f"{n} ({shown})")
    return out


def combine(folders, into, *, allow_different: bool = False) -> dict:
    """Combine several sites' report folders into one network view (see the module)."""
    import shutil
    import tempfile
    from html import escape

    import matplotlib.pyplot as plt

    from analysis import plots, style
    from analysis.errors import AnalysisError
    from analysis.folders import publish_folder
    from analysis.outputs import RELEASED, disclosure, protect, write_csv
    from analysis.params import Params
    from analysis.practices import pool, practice_row

    sites = [read_site(Path(f)) for f in folders]
    names = [s["name"] for s in sites]
    if len(set(names)) != len(names):
        raise AnalysisError(f"Two sites have the same folder name: {', '.join(names)}.")
    differ = different_definitions(sites)
    if differ and not allow_different:
        raise AnalysisError(
            "The sites' parameters differ, so their counts do not measure the same thing: "
            + "; ".join(differ)
            + ". Re-run them with the same parameters, or give --allow-different (every output "
            "then says so)."
        )
    base = dict(sites[0]["parameters"])
    params = Params.from_mapping({k: v for k, v in base.items() if k in Params.names()})
    synthetic = all(_site_is_synthetic(Path(f)) for f in folders)
    rule = disclosure.resolve(params, synthetic)
    rows, left_out = [], 0
    for s in sites:
        for unit, c in s["units"].items():
            n, npain, x = c.get("population.n"), c.get("pain.n"), c.get("target.n")
            if n is None or x is None or npain is None or n == 0:
                left_out += 1
                continue
            rows.append(practice_row(unit, n, npain, x, params))
    if not rows:
        raise AnalysisError("No site holds a released population and target subgroup to combine.")
    table = protect(pd.DataFrame(rows), "practices", rule, params).table
    table.attrs[RELEASED] = "practices"
    pooled = pool(
        table["target_n"].to_numpy(float),
        table["population_n"].to_numpy(float),
        params.pool_method,
        params.confidence_level,
        left_out,
    ).as_dict()
    pooled_df = protect(pd.DataFrame([pooled]), "practices_pooled", rule, params).table
    pooled_df.attrs[RELEASED] = "practices_pooled"
    warning = (
        "Sites with different parameters combined (--allow-different): " + "; ".join(differ)
        if differ
        else ""
    )
    label = ("synthetic data" if synthetic else "user data") + f", {len(sites)} site(s)"
    if warning:
        label += " - PARAMETERS DIFFER BETWEEN SITES"
    into = Path(into)
    into.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{into.name}.tmp-", dir=into.parent))
    try:
        write_csv(table, tmp / "practices.csv")
        out_pooled = pooled_df.copy()
        if warning:
            out_pooled["warning"] = warning
        write_csv(out_pooled, tmp / "practices_pooled.csv")
        write_results(
            practice_rows("combined", table, pooled, rule, params.ci_method), tmp / "results.csv"
        )
        for name, fig in (
            ("funnel", plots.funnel(table, pooled_df, label, left_out)),
            ("practice_forest", plots.practice_forest(table, pooled_df, label)),
        ):
            style.save_figure(fig, tmp, name)
            plt.close(fig)
        pred = (
            f"; a new unit: {pooled['prediction_low']:.2f}-{pooled['prediction_high']:.2f}% "
            "(95% prediction interval)"
            if pooled["prediction_low"] is not None
            else ""
        )
        page = [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Combined "
            "sites</title><style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
            ".warn{background:#fde8e8;border:1px solid #b00020;padding:.6em}"
            "td,th{padding:2px 8px;text-align:right}td:first-child{text-align:left}"
            "</style></head><body><h1>Combined sites</h1>",
            f"<p>{len(sites)} site(s): "
            + ", ".join(f"<code>{escape(n)}</code>" for n in names)
            + f"; {len(table)} unit(s) pooled, {left_out} left out (a count withheld at its "
            "site). Read from the sites' results tables only (no patient row).</p>",
        ]
        if warning:
            page.append(f"<p class='warn'><b>{escape(warning)}</b></p>")
        page.append(
            f"<p><b>Pooled target subgroup</b>: {pooled['estimate']:.2f}% of the population "
            f"({pooled['ci_low']:.2f}-{pooled['ci_high']:.2f}), {escape(pooled['method'])}; "
            f"tau\u00b2 {pooled['tau2']:.3f}, I\u00b2 {pooled['i2']:.0f}%{escape(pred)}.</p>"
            "<p><img src='funnel.png' style='max-width:48%' alt='funnel plot'> "
            "<img src='practice_forest.png' style='max-width:48%' alt='forest plot'></p>"
            "<p>Tables: <a href='practices.csv'>practices.csv</a>, <a "
            "href='practices_pooled.csv'>practices_pooled.csv</a>, <a "
            "href='results.csv'>results.csv</a>.</p></body></html>"
        )
        (tmp / "index.html").write_text("\n".join(page) + "\n", encoding="utf-8")
        publish_folder(tmp, into, "python -m analysis combine")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"sites": names, "units": len(table), "left_out": left_out, "pooled": pooled}


def _site_is_synthetic(folder: Path) -> bool:
    """True when every run of the site says its data were marked synthetic."""
    flags = [
        json.loads(m.read_text()).get("data_is_synthetic")
        for m in Path(folder).rglob("manifest.json")
    ]
    return bool(flags) and all(f is True for f in flags)
