"""Command line: python -m analysis COMMAND (--help on any command says more).

Every command refuses bad input (data, parameters, values) with a message on stderr,
without a traceback, and writes nothing that could pass for a result. Exit status: 0 done;
1 input refused (or, for batch and rerun, a run failed or a table differs); 2 a usage error
(an unknown command or option, a missing argument); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from analysis.errors import AnalysisError
from analysis.inputs import parse_yaml
from analysis.params import CHOICES


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {v}")
    return v


def _overrides(pairs) -> dict:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise AnalysisError(f"--set expects name=value, got {pair!r}")
        k, v = pair.split("=", 1)
        out[k.strip()] = parse_yaml(v, f"--set {k.strip()}") if v.strip() else v
    return out


def _add_params_args(sp):
    sp.add_argument("--data", help="a folder in the data contract (default: data/synthetic)")
    sp.add_argument("--params", metavar="FILE", help="YAML file of parameter overrides")
    sp.add_argument(
        "--set",
        metavar="NAME=VALUE",
        action="append",
        help="override one parameter (repeatable), e.g. --set elderly_age=80",
    )
    sp.add_argument(
        "--disclosure",
        choices=CHOICES["disclosure"],
        help="disclosure rule for what is printed (the parameter 'disclosure'; "
        "default auto: off for synthetic data, opensafely otherwise)",
    )


def _params(args):
    from analysis.params import load_params

    overrides = _overrides(args.set)
    if getattr(args, "disclosure", None):
        overrides["disclosure"] = args.disclosure
    return load_params(args.params, overrides)


def cmd_synth(args) -> int:
    from analysis import synth

    def progress(done, total):
        if args.patients >= 1_000_000:
            print(f"  {done:,}/{total:,} patients", file=sys.stderr)

    out = synth.generate(
        args.out,
        patients=args.patients,
        practices=args.practices,
        seed=args.seed,
        progress=progress,
    )
    print(
        f"Wrote the synthetic database ({args.patients:,} patients, {args.practices} "
        f"practice(s), seed {args.seed}) to {out}"
    )
    return 0


def cmd_figures(args) -> int:
    from analysis.study import run_study

    study = run_study(args.data, _params(args), detail=False)
    figs = study.figures()
    for note in study.cube.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(figs, indent=2, allow_nan=False, default=_nan_none))
    else:
        stamp = any(f.get("release") == "NOT FOR RELEASE" for f in figs)
        if stamp:
            print(_STAMP)
        print(f"Figures of the study on {study.data_location} ({study.data_label})")
        print(_figures_table(figs))
        if stamp:
            print("NOT FOR RELEASE")
    return 0


def _nan_none(v):  # pragma: no cover - json default hook
    return None


def _fmt(v, fid: str = "") -> str:
    """A count as an integer; a mean or SD rounded to 1 decimal (under a disclosure rule)
    with that decimal; other numbers with 2 decimals; a missing value as blank."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, int):
        return f"{v:,}"
    if fid.endswith(("_mean", "_sd", "_median", "_q1", "_q3", "_min", "_max")):
        return f"{v:,.1f}" if round(v, 1) == v else f"{v:,.2f}"
    return f"{v:,.2f}"


def _figures_table(figs) -> str:
    rows = [("id", "value", "interval", "n / N", "description")]
    for f in figs:
        ci = (
            f"{_fmt(f['ci_low'], f['id'])} to {_fmt(f['ci_high'], f['id'])}"
            if f.get("ci_low") is not None and f.get("ci_high") is not None
            else ""
        )
        nn = ""
        if "numerator" in f:
            nn = f"{_fmt(f['numerator'])} / {_fmt(f['denominator'])}"
        elif "denominator" in f:
            nn = (
                f"list of {_fmt(f['denominator'])}"
                if f["id"].endswith(("per_gp_list", "gp_list"))
                else f"N = {_fmt(f['denominator']) or 'withheld'}"
            )
        value = "withheld" if f.get("suppressed") else _fmt(f["value"], f["id"])
        if f.get("suppressed") and f.get("ci_low") is None:
            ci = "withheld"
        if "numerator" in f and f["numerator"] is None:
            nn = f"withheld / {_fmt(f['denominator']) or 'withheld'}"
        rows.append((f["id"], value, ci, nn, f["description"]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for i, r in enumerate(rows):
        lines.append(
            "  ".join(r[j].ljust(widths[j]) if j == 0 else r[j].rjust(widths[j]) for j in range(4))
            + "  "
            + r[4]
        )
        if i == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def cmd_sensitivity(args) -> int:
    from analysis.data import open_database
    from analysis.sensitivity import grid_cube, load_grid, sensitivity_table

    params = _params(args)
    grid = load_grid(args.grid)
    db = open_database(args.data, validate="alongside")  # the cube is built while it validates
    try:
        try:
            cube = grid_cube(db, params, grid)
        finally:
            db.check_valid()  # bad data: the validation's message, never a result
    finally:
        db.close()
    from analysis.outputs import disclosure, protect

    rule = disclosure.resolve(params, cube.is_synthetic)
    table = sensitivity_table(cube, grid, params, rule=rule)
    if rule is not None:  # audited as notebook 04 releases it (a row's pain less target...)
        from analysis.outputs.auditor import RunAuditor

        auditor = RunAuditor(cube, params, rule, grid=grid)
        raw = table
        table = auditor.release(
            raw,
            "sensitivity_grid",
            lambda force: protect(raw, "sensitivity_grid", rule, params, force=force),
        ).table
    stamp = disclosure.release_status(params, cube.is_synthetic) == disclosure.NOT_FOR_RELEASE
    if args.json:
        if stamp:
            table["release"] = disclosure.NOT_FOR_RELEASE
        print(table.to_json(orient="records", indent=2))
    else:
        if stamp:
            print(_STAMP)
        print(_grid_text(table, grid, withheld="withheld" if rule is not None else ""))
        if stamp:
            print("NOT FOR RELEASE")
    return 0


def _grid_text(table, grid, withheld: str) -> str:
    """The grid as a terminal reads it: the varied parameters, the counts and the expected
    candidates per GP list with its interval; a withheld value reads ``withheld`` (every
    column: ``--json``)."""
    import pandas as pd

    def num(v, fmt):
        return withheld if pd.isna(v) else fmt.format(v)

    rows = []
    for _, r in table.iterrows():
        row = {k: str(r[k]) for k in grid.vary}
        row["base"] = "yes" if r.get("is_base") else ""
        for c in ("population_n", "pain_n", "target_n"):
            row[c.removesuffix("_n")] = num(r[c], "{:,.0f}")
        row["per GP list"] = num(r["per_gp_list"], "{:.1f}")
        lo, hi = r["per_gp_list_low"], r["per_gp_list_high"]
        row["interval"] = withheld if pd.isna(lo) else f"{lo:.1f}-{hi:.1f}"
        rows.append(row)
    return pd.DataFrame(rows).to_string(index=False)


def cmd_methods(args) -> int:
    from analysis.engines import engine_label, source_name
    from analysis.methods import methods_text
    from analysis.outputs import atomic_write_text
    from analysis.study import run_study

    params = _params(args)
    study = run_study(args.data, params, detail=False)
    text = methods_text(
        params, study, data_name=source_name(args.data), engine=engine_label(args.data)
    )
    out = text.html() if args.format == "html" else text.markdown()
    if args.out:
        atomic_write_text(args.out, out)
        print(f"Wrote the methods and results text to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(out)
    return 0


def cmd_practices(args) -> int:
    from analysis.practices import heterogeneity, practices_summary
    from analysis.study import run_study

    study = run_study(args.data, _params(args), detail=False, by_practice=True)
    out = practices_summary(study)
    stamp = study.release == "NOT FOR RELEASE"
    if stamp:
        out["release"] = "NOT FOR RELEASE"
    if args.json:
        print(json.dumps(out, indent=2, allow_nan=False, default=_nan_none))
        return 0
    import pandas as pd

    if stamp:
        print(_STAMP)
    table = pd.DataFrame(out["practices"])
    print(f"Practices of {study.data_location} ({study.data_label})")
    if len(table):
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    if out["practices_left_out"]:
        print(
            f"{out['practices_left_out']} practice(s) left out by disclosure control (a "
            "withheld count, or left out with such a practice so that the network's totals "
            "do not give it back); not in the table nor the pooled estimate."
        )
    pooled = out["pooled"]
    if pooled:
        pred = (
            f"; a new practice: {pooled['prediction_low']:.2f}-{pooled['prediction_high']:.2f}% "
            "(95% prediction interval)"
            if pooled["prediction_low"] is not None
            else ""
        )
        print(
            f"Pooled target subgroup, % of the population ({pooled['method']}; "
            f"{pooled['practices']} practices): {pooled['estimate']:.2f}% "
            f"({pooled['ci_low']:.2f}-{pooled['ci_high']:.2f}); "
            f"{heterogeneity(pooled['tau2'], pooled['i2'], pooled['practices'])}{pred}"
        )
    return 0


def cmd_combine(args) -> int:
    from analysis.results import _shown, combine

    out = combine(
        args.folders,
        args.into,
        allow_different=args.allow_different,
        scenario=args.scenario,
        rule_name=args.disclosure or "auto",
        not_for_release=args.not_for_release,
    )
    p = out["pooled"]
    print(
        f"Combined {len(out['sites'])} site(s) (scenario {', '.join(out['scenario'])}) into "
        f"{args.into}: {out['units']} unit(s) pooled, {out['left_out']} left out; pooled target "
        f"{_shown(p.get('estimate'))}% ({_shown(p.get('ci_low'))}-{_shown(p.get('ci_high'))}); "
        f"{out['rule']}." + (" NOT FOR RELEASE." if out["not_for_release"] else "")
    )
    return 0


def cmd_new_notebook(args) -> int:
    from analysis.new_notebook import create_notebook

    made = create_notebook(args.name)
    for path in made:
        print(f"wrote {path}")
    print(
        "Edit the .py (or open the .ipynb in JupyterLab: the pair stays in sync); "
        "`make report` runs it in the default batch."
    )
    return 0


_STAMP = "NOT FOR RELEASE: data not marked synthetic, disclosure control off or weakened."


def cmd_batch(args) -> int:
    from analysis.batch import main_batch

    if args.stop_kernels:
        from analysis.batch.kernels import stop_parked

        print(f"Ended {stop_parked()} kernel(s) earlier batches left waiting.")
        return 0
    return main_batch(
        args.file, args.jobs, args.only, args.force, args.show_code, args.reports, args.disclosure
    )


def cmd_audit(args) -> int:
    from analysis import paths
    from analysis.audit import (
        consistency_audit,
        is_reproduction,
        load_published,
        reproduction_table,
    )

    published = load_published(args.published)
    figures, study = None, None
    if args.data is not None or args.params or args.set or paths.SYNTHETIC.exists():
        from analysis.study import run_study

        study = run_study(args.data, _params(args))
        figures = study.figures()
    # another paper's figures, other data or other definitions: a comparison
    comparison = study is not None and (
        published != load_published() or not is_reproduction(study.params, study.is_synthetic)
    )
    repro = reproduction_table(figures, published, comparison=comparison)
    checks = consistency_audit(published)
    stamp = any(f.get("release") == "NOT FOR RELEASE" for f in figures or [])
    if args.json:
        out = {
            "reproduction": repro.to_dict(orient="records"),
            "consistency": checks.to_dict(orient="records"),
        }
        if stamp:
            out["release"] = "NOT FOR RELEASE"
        print(json.dumps(out, indent=2))
        return 0
    if stamp:
        print(_STAMP)
    import pandas as pd

    with pd.option_context(
        "display.max_rows", None, "display.width", 250, "display.max_colwidth", 90
    ):
        print(
            (
                "Compared with the published figures"
                if comparison
                else "Reproduction of the published figures"
            )
            + ("" if figures else " (no data: nothing recomputed)")
        )
        print(
            repro[["id", "figure", "published", "recomputed", "difference", "verdict"]].to_string(
                index=False
            )
        )
        print("\nConsistency of the published figures (no patient data needed)")
        print(checks[["check", "result", "verdict"]].to_string(index=False))
        print("\nArithmetic:")
        import textwrap

        for _, r in checks.iterrows():
            if r["verdict"] in ("impossible", "inconsistent") or r["check"].startswith("SD"):
                text = (
                    f"{r['check']}: {r['verdict']}. {r['arithmetic']}. Method: {r['method']}. "
                    f"Reference: {r['reference']}."
                )
                print(textwrap.fill(text, width=100, initial_indent="- ", subsequent_indent="  "))
    return 0


def cmd_load(args) -> int:
    from analysis.engines import redact
    from analysis.load import load_into

    counts = load_into(args.data, args.into)
    print(
        f"Loaded {args.data} into {redact(args.into)}: "
        + ", ".join(f"{t} {n:,} rows" for t, n in counts.items())
    )
    return 0


def cmd_rerun(args) -> int:
    from analysis.batch import rerun_manifest

    return rerun_manifest(args.manifest)


def cmd_import(args) -> int:
    if bool(args.mapping) == bool(args.omop):
        raise AnalysisError("import needs either --mapping FILE.yaml or --omop FOLDER")
    if args.omop:
        from analysis.omop import import_omop

        report = import_omop(args.omop, args.into, code_system=args.code_system)
    else:
        from analysis.importer import import_extract

        report = import_extract(args.mapping, args.into)
    print(
        f"Imported into {args.into}: "
        + ", ".join(f"{t} {n:,} rows" for t, n in report["tables"].items())
    )
    for k, v in report["repairs"].items():
        print(f"  {k.replace('_', ' ')}: {v:,}")
    for column, rows in (report.get("codings") or {}).items():
        read = ", ".join(
            f"{r['source']} -> {r['read_as']} ({r['rows']:,})"
            if r["read_as"] != "date"
            else f"{r['source'].removeprefix('dates written ')} ({r['rows']:,})"
            for r in rows
        )
        print(f"  {column} read as: {read}")
    if report["repairs"].get("icd10_unmapped_records"):
        print(f"  codes without an ICD-9-CM mapping are listed in {args.into}/unmapped_codes.csv")
    if report.get("diagnoses_by_vocabulary"):
        print(
            "  diagnoses by vocabulary: "
            + ", ".join(f"{k} {v:,}" for k, v in report["diagnoses_by_vocabulary"].items())
        )
    if report.get("unmapped_diagnoses"):
        un = ", ".join(f"{v:,} {k}" for k, v in report["unmapped_diagnoses"].items())
        print(
            f"WARNING: {un} diagnosis record(s) could not be mapped to ICD-9-CM and were left "
            f"out: the "
            "risk definitions see none of those diagnoses.",
            file=sys.stderr,
        )
    return 0


def cmd_logs(args) -> int:
    from analysis.credentials import (
        LOG_KEEP_DAYS,
        LOG_KEEP_FILES,
        log_dir,
        problem_logs,
        prune_logs,
    )

    logs = problem_logs()
    if args.clear:
        n = prune_logs(keep_days=0, keep_files=0)
        print(f"Deleted {n} problem log(s) from {log_dir()}.")
        return 0
    print(
        f"{len(logs)} problem log(s) in {log_dir()} (private to you; they may quote patients' "
        f"values; kept {LOG_KEEP_DAYS} days, at most {LOG_KEEP_FILES}; "
        "`python -m analysis logs --clear` deletes them)."
    )
    for p in logs:
        print(f"  {p.name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from analysis import __version__

    ap = argparse.ArgumentParser(
        prog="python -m analysis",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1].strip(),
    )
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _study_commands(sub)
    _batch_and_data_commands(sub)
    return ap


def _study_commands(sub) -> None:
    """The commands that compute and print: synth, figures, sensitivity, methods, new-notebook,
    practices, combine, audit."""
    sp = sub.add_parser("synth", help="write the synthetic default database")
    sp.add_argument("--patients", type=_positive_int, default=2503, metavar="N")
    sp.add_argument("--practices", type=_positive_int, default=1, metavar="K")
    sp.add_argument("--seed", type=int, default=20160601, metavar="S")
    sp.add_argument("--out", metavar="FOLDER", help="output folder (default: data/synthetic)")
    sp.set_defaults(func=cmd_synth)

    sp = sub.add_parser("figures", help="print every figure of the study")
    _add_params_args(sp)
    sp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sp.set_defaults(func=cmd_figures)

    sp = sub.add_parser("sensitivity", help="print the sensitivity grid as one tidy table")
    _add_params_args(sp)
    sp.add_argument("--grid", metavar="FILE", help="grid YAML (default: the package's grid)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_sensitivity)
    sp = sub.add_parser(
        "methods", help="the methods and results in words, as a paper would print them"
    )
    _add_params_args(sp)
    sp.add_argument("--format", choices=["md", "html"], default="md", help="md (default) or html")
    sp.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    sp.set_defaults(func=cmd_methods)

    sp = sub.add_parser(
        "practices", help="every practice's estimate and the pooled estimate across practices"
    )
    _add_params_args(sp)
    sp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sp.set_defaults(func=cmd_practices)

    sp = sub.add_parser(
        "combine", help="combine several sites' report folders (their results tables only)"
    )
    sp.add_argument("folders", nargs="+", metavar="FOLDER", help="sites' report folders")
    sp.add_argument("--into", required=True, metavar="FOLDER")
    sp.add_argument(
        "--allow-different",
        action="store_true",
        help="combine sites whose parameters differ (every output says so)",
    )
    sp.add_argument(
        "--scenario",
        metavar="NAME",
        help="the scenario whose runs are pooled at every site (default: the runs with the "
        "paper's definitions)",
    )
    sp.add_argument(
        "--disclosure",
        choices=CHOICES["disclosure"],
        help="the network's disclosure rule (default auto: OpenSAFELY's for data not marked "
        "synthetic); the strictest of it and the sites' rules is applied to every count",
    )
    sp.add_argument(
        "--not-for-release",
        action="store_true",
        help="combine sites that are NOT FOR RELEASE or under a weaker rule; every output is "
        "then stamped NOT FOR RELEASE",
    )
    sp.set_defaults(func=cmd_combine)

    sp = sub.add_parser(
        "new-notebook", help="create a notebook pair (notebooks/NN_name.py and .ipynb)"
    )
    sp.add_argument("name", help="the analysis's name: lower-case letters, digits, _")
    sp.set_defaults(func=cmd_new_notebook)

    sp = sub.add_parser(
        "audit", help="published against recomputed, and the arithmetic of the published figures"
    )
    _add_params_args(sp)
    sp.add_argument(
        "--published",
        metavar="FILE",
        help="published figures CSV (default: data/reference/published.csv)",
    )
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_audit)


def _batch_and_data_commands(sub) -> None:
    """The commands that run batches and move data: batch, import, load, logs, rerun."""
    sp = sub.add_parser("batch", help="run a batch of notebooks with papermill")
    sp.add_argument("file", nargs="?", help="batch YAML (default: batches/paper.yaml)")
    sp.add_argument(
        "--jobs",
        type=_positive_int,
        metavar="N",
        help="parallel worker processes, each with its kernel (default: the number of cores; "
        "on Spark local[K], the cores divided by K: each kernel's Spark uses K)",
    )
    sp.add_argument("--only", metavar="PATTERN", help="run only runs whose name matches")
    sp.add_argument("--force", action="store_true", help="execute even up-to-date runs")
    sp.add_argument("--reports", metavar="DIR", help="where batch folders go (default: reports/)")
    sp.add_argument(
        "--disclosure",
        choices=CHOICES["disclosure"],
        help="disclosure rule for every run (overrides the scenarios)",
    )
    sp.add_argument(
        "--show-code", action="store_true", default=None, help="show code cells in the HTML reports"
    )
    sp.add_argument(
        "--stop-kernels",
        action="store_true",
        help="end the kernels earlier batches left waiting for the next one "
        "(ANALYSIS_KEEP_KERNELS), run nothing and exit",
    )
    sp.set_defaults(func=cmd_batch)

    sp = sub.add_parser(
        "import", help="turn a real extract into the data contract, as a mapping file says"
    )
    source = sp.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--mapping", metavar="FILE.yaml", help="mapping of a CSV/Parquet/Excel extract"
    )
    source.add_argument(
        "--omop", metavar="FOLDER", help="an OMOP CDM extract (CSV or Parquet tables)"
    )
    sp.add_argument(
        "--code-system",
        choices=["icd9cm", "icd10", "icd10cm", "snomed"],
        default=None,
        help="vocabulary of OMOP condition_source_value when the extract has no CONCEPT "
        "table (with one, each row's vocabulary is read from it)",
    )
    sp.add_argument("--into", required=True, metavar="FOLDER")
    sp.set_defaults(func=cmd_import)

    sp = sub.add_parser("load", help="copy a contract folder into a PostgreSQL database")
    sp.add_argument("--data", required=True, metavar="FOLDER")
    sp.add_argument(
        "--into",
        required=True,
        metavar="URL",
        help="postgresql://user@host:port/db[?schema=NAME] (password from PGPASSWORD)",
    )
    sp.set_defaults(func=cmd_load)

    sp = sub.add_parser(
        "logs", help="where the problem logs of failed runs on real data are; --clear deletes them"
    )
    sp.add_argument("--clear", action="store_true", help="delete every problem log")
    sp.set_defaults(func=cmd_logs)

    sp = sub.add_parser("rerun", help="repeat a batch run from its manifest and check its tables")
    sp.add_argument("manifest", help="a run's manifest.json")
    sp.set_defaults(func=cmd_rerun)


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        from analysis.credentials import refuse_passwords

        refuse_passwords(
            {f"--{k}": v for k, v in vars(args).items() if isinstance(v, str | list)},
            "The command line",
        )
        return args.func(args)
    except AnalysisError as exc:  # refused input: 1 (argparse's usage errors are 2)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `... | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
