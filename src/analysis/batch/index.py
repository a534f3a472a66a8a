"""The batch's ``index.html``: every run with its status, key figures and links.

Self-contained: inline CSS, relative links, no scripts or external assets, so it renders
from the file system without a server. It reads only what the runs wrote (manifests and
aggregate tables); it computes nothing.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

from analysis.outputs.registry import declared, spec_for
from analysis.outputs.tables import KEY_FIGURE_ORDER
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


def _esc(x) -> str:
    return html.escape("" if x is None else str(x))


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _fmt(v, digits=1) -> str:
    try:
        return f"{float(v):,.{digits}f}"
    except (TypeError, ValueError):
        return _esc(v)


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
                return _esc(text)
    return ""


def _release_badge(m: dict) -> str:
    """The run's release status, in red when it is NOT FOR RELEASE."""
    rel = m.get("release")
    if not rel:
        return ""
    cls = " class='failed'" if rel == "NOT FOR RELEASE" else ""
    return f"<br><small{cls}>release: {_esc(rel)}</small>"


def _href(*parts) -> str:
    """A relative link, quoted for a URL and escaped for an attribute."""
    from urllib.parse import quote

    return _esc("/".join(quote(str(x)) for x in parts))


def render_index(batch) -> str:
    out: Path = batch.out
    runs = {name: (d, m) for name, d, m in _run_dirs(out)}
    order = [r.name for r in batch.runs] + sorted(set(runs) - {r.name for r in batch.runs})
    synthetic = None
    rows = []
    estimate_rows = []
    for name in order:
        if name not in runs:
            rows.append(
                f"<tr><td>{_esc(name)}</td><td class='stale'>not "
                f"run</td><td></td><td></td><td></td><td></td></tr>"
            )
            continue
        d, m = runs[name]
        rel = d.name
        status = m.get("status", "?")
        cls = "ok" if status == "ok" else "failed"
        nb = str(m.get("notebook"))
        links = [
            f"<a href='{_href(rel, nb + '.html')}'>report (HTML)</a>",
            f"<a href='{_href(rel, nb + '.ipynb')}'>notebook</a>",
            f"<a href='{_href(rel, 'manifest.json')}'>manifest</a>",
            f"<a href='{_href(rel, 'run.log')}'>log</a>",
        ]
        tables = sorted((d / "tables").glob("*.csv")) if (d / "tables").exists() else []
        figures = sorted((d / "figures").glob("*.png")) if (d / "figures").exists() else []
        tlinks = " ".join(
            f"<a href='{_href(rel, 'tables', t.name)}'>{_esc(t.stem)}</a>" for t in tables
        )
        thumbs = "".join(
            f"<a href='{_href(rel, 'figures', f.name)}'><img alt='{_esc(f.stem)}' "
            f"src='{_href(rel, 'figures', f.name)}'></a>"
            for f in figures[:4]
        )
        key = ""
        est = _read_csv(d / "tables" / "eligibility_estimate.csv")
        if est:
            key = _esc(spec_for("eligibility_estimate").key_figure(est))
            estimate_rows.append((name, m.get("scenario"), est[0]))
        elif status == "ok" and m.get("notebook") == "03_eligibility":
            key = "eligibility estimate withheld (the target subgroup is withheld)"
            estimate_rows.append((name, m.get("scenario"), None))
        if not key:
            key = _key_figures(d)
        if m.get("error"):
            err = m["error"]
            what = f"cell {_esc(err.get('cell'))}: {_esc(err.get('error'))}"
            key = f"<span class='failed'>{what}</span>"
        ds = m.get("data_is_synthetic")
        if ds is not None:
            synthetic = ds if synthetic is None else (synthetic and ds)
        rows.append(
            f"<tr><td>{_esc(name)}<br><small>{_esc(m.get('notebook'))} &middot; scenario "
            f"{_esc(m.get('scenario'))}"
            f" &middot; data {_esc(m.get('data_source'))}</small>{_release_badge(m)}</td>"
            f"<td class='{cls}'>{_esc(status)}</td><td>{key}</td>"
            f"<td>{' &middot; '.join(links)}<br><small>tables: {tlinks}</small></td>"
            f"<td class='thumbs'>{thumbs}</td>"
            f"<td class='num'>{_fmt(m.get('timings', {}).get('total_s'))} s</td></tr>"
        )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Batch {_esc(batch.name)}</title><style>{CSS}</style></head><body>",
        f"<h1>Batch report: {_esc(batch.name)}</h1>",
        f"<p class='sub'>Re-analysis of Mammucari et al., Pain Ther 2016;5:123-126. Batch file "
        f"<code>{_esc(Path(batch.path).name)}</code>; {len(order)} run(s).</p>",
    ]
    if (out / "methods.html").exists():
        parts.append(
            "<p class='sub'><b>Methods and results in words</b>, ready for a manuscript: "
            f"<a href='{_href('methods.html')}'>methods.html</a> "
            f"(<a href='{_href('methods.md')}'>Markdown</a>).</p>"
        )
    if synthetic:
        parts.append(
            "<div class='banner synthetic'><b>Synthetic data.</b> These reports were made "
            "from the synthetic default cohort, not from real patients.</div>"
        )
    elif synthetic is False:
        parts.append(
            "<div class='banner real'><b>User data.</b> Aggregate outputs only; check the "
            "release sheet before sharing.</div>"
        )
    if estimate_rows:
        parts.append(
            "<h2>Eligibility estimate by scenario</h2><table><tr><th>run</th><th>scenario</th>"
            "<th>target n</th><th>benefit</th><th>candidates (interval)</th>"
            "<th>expected per GP list (interval)</th><th>in one list (prediction)</th>"
            "<th>% of all patients (interval)</th></tr>"
        )
        for name, scen, e in estimate_rows:
            if e is None:
                parts.append(
                    f"<tr><td>{_esc(name)}</td><td>{_esc(scen)}</td><td class='num'>withheld</td>"
                    "<td colspan='5'>withheld with the target subgroup by disclosure control "
                    "(a small count, or one another released number would reveal; the run's "
                    "disclosure.json says which)</td></tr>"
                )
                continue
            fixed = e.get("benefit_distribution") == "fixed"
            benefit = (
                f"at least: fixed {_fmt(e['benefit_fraction'], 2)}"
                if fixed
                else f"{_esc(e.get('benefit_distribution'))}, mean {_fmt(e['benefit_fraction'], 2)}"
            )
            parts.append(
                f"<tr><td>{_esc(name)}</td><td>{_esc(scen)}</td><td "
                f"class='num'>{_esc(e['target_n'])}</td><td>{benefit}</td>"
                f"<td class='num'>{_fmt(e['candidates'])} "
                f"({_fmt(e['candidates_low'])}-{_fmt(e['candidates_high'])})</td>"
                f"<td class='num'>{_fmt(e['per_gp_list'])} "
                f"({_fmt(e['per_gp_list_low'])}-{_fmt(e['per_gp_list_high'])})</td>"
                f"<td class='num'>{_fmt(e.get('in_one_list_low'), 0)}-"
                f"{_fmt(e.get('in_one_list_high'), 0)}</td>"
                f"<td class='num'>{_fmt(e['pct_of_population'], 2)} "
                f"({_fmt(e['pct_low'], 2)}-{_fmt(e['pct_high'], 2)})</td></tr>"
            )
        parts.append("</table>")
    repro = _reproduction_rows(out, runs)
    if repro:
        parts.append(repro)
    net = _practices_section(runs)
    if net:
        parts.append(net)
    parts.append(
        "<h2>Runs</h2><table><tr><th>run</th><th>status</th><th>key figures</th>"
        "<th>outputs</th><th>figures</th><th>time</th></tr>"
    )
    parts.extend(rows)
    parts.append(
        "</table><p><small>Each run folder holds the executed notebook, its HTML, figures "
        "(PNG and SVG), tables (CSV), a log and a manifest (parameters, input and code "
        "fingerprints, package versions, times).</small></p></body></html>"
    )
    return "\n".join(parts)


def _practices_section(runs: dict) -> str:
    """The network at a glance, from each practices run: the pooled estimate, the funnel and
    the forest plot (drawn from the run's released tables)."""
    s = []
    for _name, (d, m) in runs.items():
        if m.get("notebook") != "07_practices" or m.get("status") != "ok":
            continue
        rows = _read_csv(d / "tables" / "practices_pooled.csv")
        r = rows[0] if rows else {}
        if not comparable(r.get("practices")):  # one practice: nothing between practices
            continue
        if not s:
            s.append("<h2>Practices</h2>")
        line = "one practice or none released: nothing to pool"
        if r.get("estimate"):
            pred = (
                f"; a new practice: {_fmt(float(r['prediction_low']), 2)}-"
                f"{_fmt(float(r['prediction_high']), 2)}% (95% prediction interval)"
                if r.get("prediction_low")
                else ""
            )
            left = (
                f"; {_esc(r['practices_left_out'])} practice(s) left out by disclosure control"
                if r.get("practices_left_out") not in (None, "", "0")
                else ""
            )
            line = (
                f"target subgroup {_fmt(float(r['estimate']), 2)}% of the population "
                f"({_fmt(float(r['ci_low']), 2)}-{_fmt(float(r['ci_high']), 2)}) over "
                f"{_esc(r['practices'])} practices, {_esc(r['method'])}; "
                f"{_esc(heterogeneity(r['tau2'], r['i2'], r['practices']))}{pred}{left}"
            )
        s.append(
            f"<p><b><a href='{_href(d.name, '07_practices.html')}'>{_esc(d.name)}</a></b>: "
            f"{line}.</p><p>"
            + "".join(
                f"<img src='{_href(d.name, 'figures', f + '.png')}' alt='{f}' "
                "style='max-width:48%;margin-right:1%'>"
                for f in ("funnel", "practice_forest")
                if (d / "figures" / f"{f}.png").exists()
            )
            + "</p>"
        )
    return "\n".join(s)


def _reproduction_rows(out: Path, runs: dict) -> str:
    for _name, (d, m) in runs.items():
        if m.get("notebook") == "05_reproduction" and m.get("status") == "ok":
            rows = _read_csv(d / "tables" / "reproduction.csv")
            if not rows:
                continue
            comparison = any(
                r.get("verdict", "").endswith("the paper") for r in rows
            )  # data or definitions other than the paper's
            title = (
                "Compared with the paper (other data or definitions: differences are findings)"
                if comparison
                else "Reproduction of the published figures"
            )
            s = [
                f"<h2>{_esc(title)}</h2>",
                f"<p class='sub'>From run <a "
                f"href='{_href(d.name, '05_reproduction.html')}'>{_esc(d.name)}</a>.</p>",
                "<table><tr><th>id</th><th>figure</th><th>published</th><th>recomputed</th>"
                "<th>difference</th><th>verdict</th></tr>",
            ]
            for r in rows:
                v = r.get("verdict", "")
                cls = "verdict-" + v.split()[0] if v else ""
                s.append(
                    f"<tr><td>{_esc(r.get('id'))}</td><td>{_esc(r.get('description'))}</td>"
                    f"<td class='num'>{_esc(r.get('published'))}</td><td "
                    f"class='num'>{_esc(r.get('recomputed'))}</td>"
                    f"<td class='num'>{_esc(r.get('difference'))}</td><td "
                    f"class='{cls}'>{_esc(v)}</td></tr>"
                )
            s.append("</table>")
            return "\n".join(s)
    return ""
