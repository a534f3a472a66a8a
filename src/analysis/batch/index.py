"""The batch's ``index.html``: every run with its status, key figures and links.

Self-contained: inline CSS, relative links, no scripts or external assets, so it renders
from the file system without a server. It reads only what the runs wrote (manifests and
aggregate tables); it computes nothing.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from urllib.parse import quote

from markupsafe import Markup

from analysis.outputs.registry import declared, spec_for
from analysis.outputs.tables import KEY_FIGURE_ORDER
from analysis.pages import render
from analysis.practices import comparable, heterogeneity

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1180px;color:#222;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}
h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.sub{color:#555;margin-top:0} table{border-collapse:collapse;width:100%;font-size:.88rem}
th,td{border-bottom:1px solid #e3e3e3;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f6f8} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.ok{color:#007a4d;font-weight:600} .failed{color:#b00020;font-weight:600}
.stale{color:#8a6d00;font-weight:600}
.banner{padding:.6rem .8rem;border-radius:4px;margin:1rem 0}
.synthetic{background:#eef6ff;border:1px solid #9cc3ea}
.real{background:#fff4e5;border:1px solid #f0b860}
.thumbs img{height:90px;border:1px solid #ddd;margin:2px;background:#fff}
.verdict-reproduced{color:#007a4d;font-weight:600}.verdict-differs{color:#b00020;font-weight:600}
.verdict-not{color:#8a6d00;font-weight:600} small{color:#666}
"""


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _fmt(v, digits=1) -> str:
    """A number with thousands separators and ``digits`` decimals; anything else as text
    (the template escapes it)."""
    try:
        return f"{float(v):,.{digits}f}"
    except (TypeError, ValueError):
        return "" if v is None else str(v)


def _run_dirs(out: Path):
    """(name, folder, manifest) of every run folder, complete or failed."""
    found = []
    for d in sorted(out.iterdir()):
        if not d.is_dir() or d.name.startswith("."):
            continue
        m = d / "manifest.json"
        if m.exists():
            try:
                found.append((d.name.removesuffix(".failed"), d, json.loads(m.read_text())))
            except json.JSONDecodeError:
                continue
    return found


def _key_figures(d: Path) -> str:
    """A line of key figures for runs without an eligibility estimate: the first declared
    table of the run that has a key figure (``analysis.outputs.tables``)."""
    specs = declared()
    for name in KEY_FIGURE_ORDER[1:]:
        rows = _read_csv(d / "tables" / f"{name}.csv")
        if rows and specs[name].key_figure:
            text = specs[name].key_figure(rows)
            if text:
                return text
    return ""


def _href(*parts) -> str:
    """A relative link, quoted for a URL (the template escapes it for the attribute)."""
    return "/".join(quote(str(x)) for x in parts)


def render_index(batch) -> str:
    """The index page of ``batch``'s folder (template ``index.html.j2``)."""
    out: Path = batch.out
    runs = {name: (d, m) for name, d, m in _run_dirs(out)}
    order = [r.name for r in batch.runs] + sorted(set(runs) - {r.name for r in batch.runs})
    synthetic, rows, estimates = None, [], []
    for name in order:
        if name not in runs:
            rows.append({"name": name, "missing": True})
            continue
        d, m = runs[name]
        row, estimate = _run_row(name, d, m)
        rows.append(row)
        if estimate is not None:
            estimates.append(estimate)
        ds = m.get("data_is_synthetic")
        if ds is not None:
            synthetic = ds if synthetic is None else (synthetic and ds)
    return render(
        "index.html.j2",
        name=batch.name,
        css=Markup(CSS),
        batch_file=Path(batch.path).name,
        n_runs=len(order),
        methods=(out / "methods.html").exists(),
        synthetic=synthetic,
        estimates=estimates,
        reproduction=_reproduction(runs),
        practices=_practices(runs),
        runs=rows,
    )


def _run_row(name: str, d: Path, m: dict):
    """A run's row of the runs table, and its row of the estimates table (None: none)."""
    rel = d.name
    status = m.get("status", "?")
    nb = str(m.get("notebook"))
    tables = sorted((d / "tables").glob("*.csv")) if (d / "tables").exists() else []
    figures = sorted((d / "figures").glob("*.png")) if (d / "figures").exists() else []
    key, estimate = "", None
    est = _read_csv(d / "tables" / "eligibility_estimate.csv")
    if est:
        key = spec_for("eligibility_estimate").key_figure(est)
        estimate = _estimate_row(name, m.get("scenario"), est[0])
    elif status == "ok" and m.get("notebook") == "03_eligibility":
        key = "eligibility estimate withheld (the target subgroup is withheld)"
        estimate = {"name": name, "scenario": m.get("scenario"), "withheld": True}
    key = key or _key_figures(d)
    err = m.get("error")
    row = {
        "name": name,
        "missing": False,
        "notebook": m.get("notebook"),
        "scenario": m.get("scenario"),
        "data_source": m.get("data_source"),
        "release": m.get("release"),
        "status": status,
        "status_class": "ok" if status == "ok" else "failed",
        "key": key,
        "error": f"cell {err.get('cell')}: {err.get('error')}" if err else "",
        "links": [
            (_href(rel, nb + ".html"), "report (HTML)"),
            (_href(rel, nb + ".ipynb"), "notebook"),
            (_href(rel, "manifest.json"), "manifest"),
            (_href(rel, "run.log"), "log"),
        ],
        "tables": [(_href(rel, "tables", t.name), t.stem) for t in tables],
        "thumbs": [(_href(rel, "figures", f.name), f.stem) for f in figures[:4]],
        "time": _fmt(m.get("timings", {}).get("total_s")),
    }
    return row, estimate


def _estimate_row(name, scenario, e: dict) -> dict:
    fixed = e.get("benefit_distribution") == "fixed"
    return {
        "name": name,
        "scenario": scenario,
        "withheld": False,
        "target_n": e["target_n"],
        "benefit": f"at least: fixed {_fmt(e['benefit_fraction'], 2)}"
        if fixed
        else f"{e.get('benefit_distribution')}, mean {_fmt(e['benefit_fraction'], 2)}",
        "candidates": f"{_fmt(e['candidates'])} "
        f"({_fmt(e['candidates_low'])}-{_fmt(e['candidates_high'])})",
        "per_gp_list": f"{_fmt(e['per_gp_list'])} "
        f"({_fmt(e['per_gp_list_low'])}-{_fmt(e['per_gp_list_high'])})",
        "in_one_list": f"{_fmt(e.get('in_one_list_low'), 0)}-{_fmt(e.get('in_one_list_high'), 0)}",
        "pct": f"{_fmt(e['pct_of_population'], 2)} "
        f"({_fmt(e['pct_low'], 2)}-{_fmt(e['pct_high'], 2)})",
    }


def _practices(runs: dict) -> list[dict]:
    """The network at a glance, from each practices run: the pooled estimate, the funnel and
    the forest plot (drawn from the run's released tables)."""
    out = []
    for _name, (d, m) in runs.items():
        if m.get("notebook") != "07_practices" or m.get("status") != "ok":
            continue
        rows = _read_csv(d / "tables" / "practices_pooled.csv")
        r = rows[0] if rows else {}
        if not comparable(r.get("practices")):  # one practice: nothing between practices
            continue
        line = "one practice or none released: nothing to pool"
        if r.get("estimate"):
            pred = (
                f"; a new practice: {_fmt(float(r['prediction_low']), 2)}-"
                f"{_fmt(float(r['prediction_high']), 2)}% (95% prediction interval)"
                if r.get("prediction_low")
                else ""
            )
            left = (
                f"; {r['practices_left_out']} practice(s) left out by disclosure control"
                if r.get("practices_left_out") not in (None, "", "0")
                else ""
            )
            line = (
                f"target subgroup {_fmt(float(r['estimate']), 2)}% of the population "
                f"({_fmt(float(r['ci_low']), 2)}-{_fmt(float(r['ci_high']), 2)}) over "
                f"{r['practices']} practices, {r['method']}; "
                f"{heterogeneity(r['tau2'], r['i2'], r['practices'])}{pred}{left}"
            )
        out.append(
            {
                "run": d.name,
                "href": _href(d.name, "07_practices.html"),
                "line": line,
                "figures": [
                    {"href": _href(d.name, "figures", f + ".png"), "alt": f}
                    for f in ("funnel", "practice_forest")
                    if (d / "figures" / f"{f}.png").exists()
                ],
            }
        )
    return out


def _reproduction(runs: dict) -> dict | None:
    """The reproduction table of the batch's 05 run (the first that wrote one)."""
    for _name, (d, m) in runs.items():
        if m.get("notebook") != "05_reproduction" or m.get("status") != "ok":
            continue
        rows = _read_csv(d / "tables" / "reproduction.csv")
        if not rows:
            continue
        # data or definitions other than the paper's: a comparison, not a reproduction
        comparison = any(r.get("verdict", "").endswith("the paper") for r in rows)
        return {
            "title": "Compared with the paper (other data or definitions: differences are findings)"
            if comparison
            else "Reproduction of the published figures",
            "run": d.name,
            "href": _href(d.name, "05_reproduction.html"),
            "rows": [
                {
                    **{
                        k: r.get(k)
                        for k in ("id", "description", "published", "recomputed", "difference")
                    },  # fmt: skip
                    "verdict": r.get("verdict", ""),
                    "css": "verdict-" + r["verdict"].split()[0] if r.get("verdict") else "",
                }
                for r in rows
            ],
        }
    return None
