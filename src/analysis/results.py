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
import math
from pathlib import Path

import pandas as pd

from analysis import plots, style
from analysis.errors import AnalysisError
from analysis.files import atomic_write_text
from analysis.folders import publish_folder
from analysis.outputs import RELEASED, disclosure, protect, write_csv
from analysis.outputs.disclosure import Rule
from analysis.pages import render
from analysis.params import Params
from analysis.practices import heterogeneity, pool, practice_row

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
    return write_csv(pd.DataFrame(rows, columns=list(COLUMNS)), target)


# ----------------------------------------------------------------------------- combine
MAX_RESULTS_BYTES = 50_000_000
"""Largest results.csv or manifest.json a site may send."""


def _read_json(path: Path) -> dict:
    """A site's manifest, parsed (a JSON object of a sane size, not through a link)."""

    if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_RESULTS_BYTES:
        raise AnalysisError(f"{path}: not a run manifest (a link, not a file, or too large).")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnalysisError(f"{path} is not a run manifest ({exc}).") from None
    if not isinstance(m, dict):
        raise AnalysisError(f"{path} is not a run manifest (not a JSON object).")
    return m


def _site_runs(folder: Path) -> list[dict]:
    """The finished runs of a site's report folder that wrote results: their manifest and
    their results.csv (links and oversized files refused)."""

    runs = []
    for f in sorted(Path(folder).rglob("results.csv")):
        if f.is_symlink() or any(
            p.is_symlink() for p in f.relative_to(folder).parents if p != Path(".")
        ):
            raise AnalysisError(f"{f}: a symbolic link in a site's folder; refused.")
        man = f.parent / "manifest.json"
        m = _read_json(man) if man.exists() else {}
        if m.get("status") not in (None, "ok"):
            continue
        if f.stat().st_size > MAX_RESULTS_BYTES:
            raise AnalysisError(f"{f}: larger than a results table ({MAX_RESULTS_BYTES:,} bytes).")
        runs.append({"file": f, "manifest": m})
    return runs


def _definitions(params: dict) -> dict:
    return {k: v for k, v in params.items() if k not in _NOT_DEFINITIONS}


def _paper_definitions() -> dict:
    return _definitions(Params().to_dict())


def read_site(folder: Path, scenario: str | None = None) -> dict:
    """One site's results for ``scenario`` (default: the runs whose definitions are the
    paper's): its units (practices when it has a practices run, else the site as one unit)
    with released counts, the definitions and parameters the runs used, and the site's
    disclosure rule and release status as its manifests say."""

    folder = Path(folder)
    name = folder.name
    runs = _site_runs(folder)
    if not runs:
        raise AnalysisError(
            f"{folder}: no results.csv (a report folder written by a batch of this version)."
        )
    scenarios = sorted({str(r["manifest"].get("scenario", "")) for r in runs})
    if scenario is not None:
        chosen = [r for r in runs if r["manifest"].get("scenario") == scenario]
        if not chosen:
            raise AnalysisError(
                f"Site {name}: no run of scenario {scenario!r}; its scenarios: "
                f"{', '.join(scenarios)}."
            )
    else:
        paper = _paper_definitions()
        matching = sorted(
            {
                r["manifest"].get("scenario", "")
                for r in runs
                if _definitions(
                    Params.from_mapping(
                        {
                            k: v
                            for k, v in (r["manifest"].get("resolved_parameters") or {}).items()
                            if k in Params.names()
                        }
                    ).to_dict()
                )
                == paper
            }
        )
        if not matching:
            raise AnalysisError(
                f"Site {name}: no run uses the paper's definitions; choose a scenario with "
                f"--scenario (its scenarios: {', '.join(scenarios)})."
            )
        scenario = matching[0]  # their counts are the same: the definitions are
        chosen = [r for r in runs if r["manifest"].get("scenario", "") == scenario]
    practices, overall, params = {}, {}, {}
    rules, releases, synthetic = set(), set(), []
    sources = {r["manifest"].get("data_source") for r in chosen}
    for r in chosen:
        m = r["manifest"]
        p = m.get("resolved_parameters") or {}
        synthetic.append(m.get("data_is_synthetic") is True)
        releases.add(m.get("release"))
        typed = Params.from_mapping({k: v for k, v in p.items() if k in Params.names()})
        rules.add(disclosure.resolve(typed, m.get("data_is_synthetic") is True))
        prefix = f"{m.get('data_source')}/" if len(sources) > 1 else ""
        with r["file"].open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        for row in rows:
            variable = row.get("variable")
            if variable not in ("population.n", "pain.n", "target.n"):
                continue
            if row.get("group") == "practice":
                practices.setdefault(prefix + str(row.get("stratum")), {})[variable] = _int(
                    row.get("value")
                )
                params.setdefault("practices", p)
            elif row.get("group") == "all":
                overall.setdefault(prefix, {}).setdefault(variable, _int(row.get("value")))
                params.setdefault("all", p)
    if practices:
        units = {f"{name}/{k}": v for k, v in sorted(practices.items())}
        used = params["practices"]
    else:
        units = {f"{name}/{k}".rstrip("/"): v for k, v in sorted(overall.items())}
        used = params.get("all", {})
    is_synthetic = bool(synthetic) and all(synthetic)
    not_for_release = disclosure.NOT_FOR_RELEASE in releases or any(
        r is not None and not r.for_release for r in rules
    )
    return {
        "name": name,
        "scenario": scenario,
        "units": units,
        "definitions": _definitions(used),
        "parameters": used,
        "synthetic": is_synthetic,
        "rules": rules,
        "not_for_release": not_for_release and not is_synthetic,
    }


def _int(v):
    try:
        return None if v in ("", None) else int(round(float(v)))
    except (TypeError, ValueError):
        return None


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


def _weaker(rule, than) -> bool:
    """Whether ``rule`` (None: off) releases what ``than`` would withhold or round."""
    if than is None:
        return False
    if rule is None:
        return True
    return rule.threshold < than.threshold or rule.round_to % than.round_to != 0


def strictest_rule(rules):
    """One rule at least as strict as each of ``rules`` (None: off): the highest threshold
    and the least common multiple of the roundings."""

    rules = [r for r in rules if r is not None]
    if not rules:
        return None
    if len({(r.threshold, r.round_to) for r in rules}) == 1:
        return sorted(rules, key=lambda r: r.name)[0]
    threshold = max(r.threshold for r in rules)
    round_to = math.lcm(*(r.round_to for r in rules))
    names = " + ".join(sorted({r.name for r in rules}))
    return Rule(f"strictest of {names}", threshold=threshold, round_to=round_to)


def _shown(v, fmt: str = "{:.2f}") -> str:
    """A value for a sentence: ``withheld`` where it is missing (never ``nan``)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "withheld"
    return fmt.format(v)


def _network_rule(sites, rule_name: str, not_for_release: bool):
    """The rule the combination applies, and the sites that make it NOT FOR RELEASE; a
    site that is NOT FOR RELEASE, or released under a weaker rule than the network's, is
    refused by name unless ``not_for_release``."""

    synthetic = all(s["synthetic"] for s in sites)
    network = disclosure.resolve(rule_name, synthetic)
    unreleased = []
    for s in sites:
        if s["synthetic"]:
            continue
        if s["not_for_release"]:
            unreleased.append(f"{s['name']} (its manifests say NOT FOR RELEASE)")
        elif any(_weaker(r, network) for r in s["rules"]):
            weakest = ", ".join(sorted(r.describe() if r else "no rule" for r in s["rules"]))
            unreleased.append(
                f"{s['name']} (released under {weakest}, weaker than the network's "
                f"{network.describe() if network else 'no rule'})"
            )
    if unreleased and not not_for_release:
        raise AnalysisError(
            "Site(s) whose counts are not released under the network's rule: "
            + "; ".join(unreleased)
            + ". Re-run them under that rule, choose the rule with --disclosure, or give "
            "--not-for-release (every output is then stamped NOT FOR RELEASE). Nothing was "
            "written."
        )
    rules = [r for s in sites for r in s["rules"]] + [network]
    return strictest_rule(rules), unreleased, synthetic


def combine(
    folders,
    into,
    *,
    allow_different: bool = False,
    scenario: str | None = None,
    rule_name: str = "auto",
    not_for_release: bool = False,
) -> dict:
    """Combine several sites' report folders into one network view (see the module). The
    result does not depend on the order of ``folders``: sites are taken by name."""
    import shutil
    import tempfile

    names = [Path(f).name for f in folders]
    if len(set(names)) != len(names):
        raise AnalysisError(f"Two sites have the same folder name: {', '.join(sorted(names))}.")
    sites = sorted((read_site(Path(f), scenario) for f in folders), key=lambda s: s["name"])
    names = [s["name"] for s in sites]
    differ = different_definitions(sites)
    if differ and not allow_different:
        raise AnalysisError(
            "The sites' parameters differ, so their counts do not measure the same thing: "
            + "; ".join(differ)
            + ". Re-run them with the same parameters, or give --allow-different (every output "
            "then says so)."
        )
    rule, unreleased, synthetic = _network_rule(sites, rule_name, not_for_release)
    stamped = bool(unreleased)
    params = _network_params(sites)
    rows, left_out = _network_rows(sites, rule, params)
    total_left_out = sum(left_out.values())
    if not rows:
        raise AnalysisError(
            "No site holds a released population and target subgroup to combine ("
            + ", ".join(f"{k}: {v} left out" for k, v in left_out.items())
            + ")."
        )
    table = protect(pd.DataFrame(rows), "practices", rule, params).table
    table.attrs[RELEASED] = "practices"
    kept = table.dropna(subset=["target_n", "population_n"])
    total_left_out += len(table) - len(kept)
    pooled = pool(
        kept["target_n"].to_numpy(float),
        kept["population_n"].to_numpy(float),
        params.pool_method,
        params.confidence_level,
        total_left_out,
    ).as_dict()
    pooled_df = protect(pd.DataFrame([pooled]), "practices_pooled", rule, params).table
    pooled_df.attrs[RELEASED] = "practices_pooled"
    shown = pooled_df.iloc[0].to_dict()
    chosen = sorted({s["scenario"] for s in sites})
    label, warning, stamp = _network_label(sites, chosen, synthetic, differ, unreleased)
    rule_text = rule.describe() if rule else "no rule (synthetic data)"
    into = Path(into)
    into.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{into.name}.tmp-", dir=into.parent))
    try:
        _combined_tables(tmp, table, pooled_df, ", ".join(chosen), rule_text, warning, stamped)
        results = practice_rows("combined", table, shown, rule, params.ci_method)
        if stamped:
            results = [{**r, "disclosure": f"{r['disclosure']} (NOT FOR RELEASE)"} for r in results]
        write_results(results, tmp / "results.csv")
        _combined_figures(tmp, table, pooled_df, label, total_left_out, stamped)
        page = render(
            "combined.html.j2",
            stamp=stamp,
            sites=names,
            scenario=", ".join(chosen),
            pooled_units=len(kept),
            left_out=total_left_out,
            left_out_by_site=left_out,
            rule=rule_text,
            warning=warning,
            estimate=_shown(shown.get("estimate")),
            ci_low=_shown(shown.get("ci_low")),
            ci_high=_shown(shown.get("ci_high")),
            method=str(shown.get("method")),
            spread=heterogeneity(shown.get("tau2"), shown.get("i2"), len(kept)),
            prediction=_prediction_words(shown),
        )
        atomic_write_text(tmp / "index.html", page)
        publish_folder(tmp, into, "python -m analysis combine")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "sites": names,
        "scenario": chosen,
        "units": len(kept),
        "left_out": total_left_out,
        "left_out_by_site": left_out,
        "pooled": shown,
        "rule": rule_text,
        "not_for_release": stamped,
    }


def _prediction_words(shown: dict) -> str:
    """The prediction interval for a new unit, where there is one."""
    low = shown.get("prediction_low")
    if low is None or pd.isna(low):
        return ""
    return (
        f"; a new unit: {_shown(low)}-{_shown(shown.get('prediction_high'))}% "
        "(95% prediction interval)"
    )


def _network_label(sites, chosen, synthetic, differ, unreleased):
    """(the figures' data label, the warning that parameters differ, the NOT FOR RELEASE
    stamp); empty texts where there is nothing to say."""
    warning = (
        "Sites with different parameters combined (--allow-different): " + "; ".join(differ)
        if differ
        else ""
    )
    stamp = (
        "NOT FOR RELEASE: combined with site(s) not released under the network's rule: "
        + "; ".join(unreleased)
        if unreleased
        else ""
    )
    label = ("synthetic data" if synthetic else "user data") + f", {len(sites)} site(s)"
    label += f", scenario {', '.join(chosen)}"
    if warning:
        label += " - PARAMETERS DIFFER BETWEEN SITES"
    if unreleased:
        label = "NOT FOR RELEASE - " + label
    return label, warning, stamp


def _network_params(sites) -> Params:
    """The first site's definitions, with the analysis settings (interval and pool
    methods, level) where every site agrees."""
    analysis_keys = ("ci_method", "confidence_level", "pool_method")
    shared = {
        k: sites[0]["parameters"][k]
        for k in analysis_keys
        if k in sites[0]["parameters"]
        and all(s["parameters"].get(k) == sites[0]["parameters"][k] for s in sites)
    }
    return Params.from_mapping(
        {
            **{k: v for k, v in sites[0]["definitions"].items() if k in Params.names()},
            **shared,
        }
    )


def _network_rows(sites, rule, params):
    """A practices row for every unit with released counts, and how many units each site
    had left out (a count withheld under the network's rule, or no population)."""
    rows, left_out = [], {}
    for s in sites:
        left_out[s["name"]] = 0
        for unit, c in s["units"].items():
            n, npain, x = c.get("population.n"), c.get("pain.n"), c.get("target.n")
            released = [rule.release(v) if rule else v for v in (n, npain, x)]
            if any(v is None for v in released) or released[0] == 0:
                left_out[s["name"]] += 1
                continue
            rows.append(practice_row(unit, *released, params))
    return rows, left_out


def _combined_tables(folder, table, pooled_df, scenario, rule_text, warning, stamped) -> None:
    """practices.csv and practices_pooled.csv, with the scenario, the rule, any warning
    and the NOT FOR RELEASE stamp."""
    out_table = table.copy()
    out_pooled = pooled_df.copy()
    out_pooled["scenario"] = scenario
    out_pooled["disclosure"] = rule_text
    if warning:
        out_pooled["warning"] = warning
    if stamped:
        out_table["release"] = disclosure.NOT_FOR_RELEASE
        out_pooled["release"] = disclosure.NOT_FOR_RELEASE
    write_csv(out_table, folder / "practices.csv")
    write_csv(out_pooled, folder / "practices_pooled.csv")


def _combined_figures(folder, table, pooled_df, label, left_out, stamped) -> None:
    """The network's funnel and forest plots, stamped NOT FOR RELEASE where it is."""
    import matplotlib.pyplot as plt

    for name, fig in (
        ("funnel", plots.funnel(table, pooled_df, label, left_out)),
        ("practice_forest", plots.practice_forest(table, pooled_df, label)),
    ):
        if stamped:
            fig.text(
                0.5,
                0.99,
                "NOT FOR RELEASE",
                color="#b00020",
                ha="center",
                va="top",
                fontsize=14,
                fontweight="bold",
            )
        style.save_figure(fig, folder, name)
        plt.close(fig)
