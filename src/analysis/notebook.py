"""What a notebook needs to stay thin: check its parameters, open the study, save outputs.

A notebook's ``parameters`` cell holds literal defaults only; the next cell calls
:func:`start` with ``globals()``, which refuses any name that is not a parameter (papermill
injects whatever it is given, so ``-p elderly_agee 80`` would otherwise run the default),
builds the parameter set and the study, and returns a :class:`NotebookRun`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import paths, style
from analysis.credentials import refuse_passwords, withheld_error
from analysis.data import is_synthetic, open_database
from analysis.engines import engine_label, is_url, redact, source_name
from analysis.errors import AnalysisError
from analysis.files import atomic_write_text
from analysis.methods import NOTEBOOK_SECTIONS, methods_text
from analysis.outputs import (
    RELEASED,
    disclosure,
    inside,
    require_released,
    safe_name,
    save_table,
    spec_for,
    write_csv,  # noqa: F401  (re-exported)
)
from analysis.outputs.auditor import RunAuditor
from analysis.outputs.disclosure import REASON_WORDS, release_status
from analysis.outputs.ledger import Ledger
from analysis.outputs.manuscript import write_manuscript_table
from analysis.params import DEFAULTS, Params, check_names, read_params_file
from analysis.plots import NotDrawn
from analysis.practices import comparable, no_comparison_words
from analysis.results import figures_rows, practice_rows, write_results
from analysis.study import data_label, run_study

HIDE_TAGS = "analysis_hide_cells_tagged"
"""Output metadata key: cells with these tags are left out of the run's HTML report."""

# names every notebook may take besides the analysis parameters
RUN_PARAMETERS = ("data", "output_dir", "params_file", "grid", "published")
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def resolve(path: str | os.PathLike | None, default: Path | None = None) -> Path | None:
    """A path as given, or relative to the project root when it does not exist as given
    (notebooks run with the notebook folder as working directory in JupyterLab)."""
    if path in (None, ""):
        return default

    if is_url(path):
        return path  # a database URL (its password comes from the environment)
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return paths.ROOT / p


_FIRST_NAMES = "_analysis_parameter_names"
"""Where :func:`start` keeps the names of the parameters it first saw in a namespace."""


def injected_parameters(namespace: dict) -> dict:
    """The user-level names of a notebook namespace (what the parameters cells defined)."""
    import types

    out = {}
    for k, v in namespace.items():
        if k.startswith("_") or k in _IPYTHON_NAMES or isinstance(v, types.ModuleType):
            continue
        if callable(v) and not isinstance(v, str | int | float | list | tuple):
            continue
        out[k] = v
    return out


def check_notebook_parameters(names, *, notebook: str) -> None:
    """Refuse names that are neither parameters nor run parameters (data, output_dir...)."""
    try:
        check_names(
            dict.fromkeys(names), source=f"notebook {notebook}", allowed_extra=RUN_PARAMETERS
        )
    except AnalysisError as exc:
        raise AnalysisError(f"{exc}\nNothing was computed.") from None


@dataclass
class NotebookRun:
    notebook: str
    params: Params
    data: Path
    out: Path
    study: object | None = None
    suppressed: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    cube: object | None = None  # the cube of a notebook that builds its own (04)
    grid: object | None = None  # the sensitivity grid the notebook releases (04)
    _synthetic: bool | None = None
    _auditor: object | None = None
    _fingerprint: dict | None = None
    _reasons: dict = field(default_factory=dict)  # table -> column -> row -> why withheld

    @property
    def data_label(self) -> str:
        return self.study.data_label if self.study else str(self.data)

    def header(self, title: str):
        from IPython.display import Markdown

        s = self.study
        kind = (
            "**synthetic default data** (not real patients)" if s.is_synthetic else "**user data**"
        )
        rule = s.disclosure_rule
        note = (
            f"\n\n**Disclosure control**: {rule.describe()}; statistics of withheld groups are "
            "withheld with them, and percentages are computed from the released counts."
            if rule
            else ""
        )
        for n in s.cube.notes:
            note += f"\n\n**Note**: {n}."
        if self.release == "NOT FOR RELEASE":
            note += (
                "\n\n**NOT FOR RELEASE**: data not marked synthetic, disclosure control "
                "off or weakened."
            )
        where = self.data.name if isinstance(self.data, Path) else redact(str(self.data))
        return Markdown(
            f"## {escape(title)}\n\nData: {kind}, `{escape(where)}`, n = {s.n_words} "
            f"patients. Index date {self.params.index_date}; look-back window "
            f"{self.params.window_start} to {self.params.index_date}.{escape(note, quote=False)}"
        )

    def show(self, df: pd.DataFrame, *args, index: str | None = None, digits: int = 2):
        """A table for display (:func:`display_table`), ``index``: the column that labels
        its rows (``run.show(sexes, index="sex")``); under a disclosure rule the cells
        withheld (a count below the threshold and what derives from it) read "withheld"."""
        if args:  # run.show(df, "sex"), as notebooks wrote it before the name was given
            index, *rest = args
            if rest:
                digits = rest[0]
        if index is not None and index not in df.columns:
            raise AnalysisError(
                f"run.show(..., index={index!r}): the table has no column {index!r}; "
                f"index names the column that labels the rows, one of: "
                f"{', '.join(map(str, df.columns))}."
            )
        return display_table(
            df, index=index, digits=digits, withheld=self._withheld(df), why=self._why(df)
        )

    def _why(self, df: pd.DataFrame) -> dict:
        """Column -> row position -> a short reason, for the counts the generic step withheld."""

        reasons = self._reasons.get(getattr(df, "attrs", {}).get(RELEASED), {})
        out = {}
        for col, rows in reasons.items():
            for label, text in rows.items():
                word = REASON_WORDS.get(text)
                if word and col in df.columns and label in df.index:
                    out.setdefault(col, {})[int(df.index.get_loc(label))] = word
        return out

    def _withheld(self, df: pd.DataFrame) -> dict:
        """Column -> row positions withheld, from the table's declaration."""

        name = getattr(df, "attrs", {}).get(RELEASED)
        if self.rule is None or not name:
            return {}
        spec = spec_for(name)
        out: dict[str, set] = {}
        others = [c for c in df.columns if c not in spec.counts and c not in spec.keys]
        for c in spec.counts:
            if c not in df.columns:
                continue
            rows = set(np.flatnonzero(df[c].isna().to_numpy()))
            if not rows:
                continue
            for col in (c, *spec.derived.get(c, others)):
                if col in df.columns:
                    out.setdefault(col, set()).update(rows)
        out.update({c: set(range(len(df))) for c in spec.withhold if c in df.columns})
        return out

    @property
    def rule(self):
        """The disclosure rule in force (None for synthetic data under ``auto``)."""

        return disclosure.resolve(self.params, self.is_synthetic)

    @property
    def is_synthetic(self) -> bool:
        if self.study:
            return self.study.is_synthetic
        if self._synthetic is None:
            self._synthetic = is_synthetic(self.data)
        return self._synthetic

    @property
    def release(self) -> str:
        """synthetic data / aggregates under disclosure control / NOT FOR RELEASE."""

        return release_status(self.params, self.is_synthetic)

    def cube_label(self, cube) -> str:
        """'synthetic default data, n = ...' for a cube the notebook built itself."""

        return data_label(cube, self.rule)

    def save_table(self, df: pd.DataFrame, name: str) -> pd.DataFrame:
        """The one disclosure step: check ``df`` against the declaration of ``name``,
        protect it under the rule in force, write ``tables/<name>.csv`` and return the
        released table; show and plot what this returns (it is what was released)."""

        released = save_table(df, name, self.out, self.rule, self.params, self.auditor)
        t = released.table
        n = released.withheld_cells
        if self.rule is not None and not n:
            # tables protected upstream (attrition, grid): count their withheld count cells
            n = int(sum(int(t[c].isna().sum()) for c in spec_for(name).counts if c in t.columns))
        self.suppressed[name] = n
        self.tables[name] = {
            "note": spec_for(name).note,
            "cells_withheld": n,
            "rows_left_out": released.dropped_rows,
        }
        because = Counter(w for rows in released.reasons.values() for w in rows.values())
        if because:
            self.tables[name]["withheld_because"] = dict(sorted(because.items()))
        self._reasons[name] = released.reasons
        self._write_disclosure()
        return t

    def manuscript_table(self, released: pd.DataFrame, name: str):
        """The released table ``name`` (Table 1, a prevalence table) as a paper prints it,
        also written as ``tables/<name>.docx`` and ``tables/<name>.xlsx``; displays as a
        table. Only a table returned by :meth:`save_table` is accepted."""

        table, files = write_manuscript_table(released, name, self.out, self.data_label)
        self.tables.setdefault(name, {})["manuscript"] = files
        self._write_disclosure()
        return table

    def methods(self, *sections: str):
        """The methods (and results) in words for this notebook: the sections of
        :data:`analysis.methods.NOTEBOOK_SECTIONS`, or those named."""

        keys = sections or NOTEBOOK_SECTIONS.get(self.notebook, ("population", "definitions"))
        grid = getattr(self, "grid", None)
        text = methods_text(
            self.params,
            self.study,
            data_name=source_name(self.data),
            engine=engine_label(self.data),
            grid=grid,
        )
        part = text.part(*keys)
        part.title = ""  # the notebook's own heading introduces it
        return part

    def _write_disclosure(self) -> None:
        import json

        rule = self.rule
        record = {
            "rule": rule.name if rule else "off",
            "description": rule.describe() if rule else "no disclosure control",
            "release": self.release,
            "data_is_synthetic": bool(self.is_synthetic),
            "suppressed_cells": self.suppressed,
            "derived_statistics": (
                "shares, proportion intervals, SMDs and odds ratios computed from "
                "the released counts; means and SDs rounded to 1 decimal; "
                "extremes, quantiles and intervals of means withheld"
            )
            if rule
            else "",
            "tables": self.tables,
            "figures": self.figures,
        }
        if self.auditor is not None:
            record["audit"] = {
                "method": self.auditor.method
                or "no table of this run holds numbers the audit declares",
                "withheld": self.auditor.withheld_by_audit,
                "follows_from_earlier_releases": self.auditor.unresolved,
                "earlier_runs": self.auditor.earlier_runs,
                "earlier_numbers_left_aside": self.auditor.left_aside,
            }
        atomic_write_text(
            self.out / "disclosure.json", json.dumps(record, indent=2, sort_keys=True) + "\n"
        )

    @property
    def auditor(self):
        """The run's disclosure audit (:mod:`analysis.outputs.auditor`), under a rule: of
        what it releases, with what runs before it released from the same data into the
        same reports folder (:mod:`analysis.outputs.ledger`)."""
        cube = self.study.cube if self.study is not None else self.cube
        if self._auditor is None and self.rule is not None and cube is not None:
            fingerprint = (
                self.study.fingerprint if self.study is not None else self._fingerprint
            ) or {"data": str(self.data)}
            ledger = Ledger.for_run(self.out.parent, fingerprint, self.params, self.run_name)

            def rebuild(**options):
                with self.guard():
                    return run_study(self.data, self.params, **options).cube

            self._auditor = RunAuditor(
                cube,
                self.params,
                self.rule,
                figures=self.study.figures() if self.study is not None else (),
                ledger=ledger,
                rebuild=rebuild,
                grid=self.grid,
                study=self.study,
            )
        return self._auditor

    @property
    def run_name(self) -> str:
        """The batch run's name (its folder; a batch writes into ``.tmp-<run>-<pid>``)."""
        import re

        return re.sub(r"^\.tmp-(.*)-\d+$", r"\1", self.out.name)

    def record_practices(self, table: pd.DataFrame, pooled: dict | None) -> None:
        """Add a released practices table and its pool to the run's ``results.csv``."""

        require_released(table, "the practices results")
        self._practice_rows = practice_rows(
            self.run_name, table, pooled, self.rule, self.params.ci_method
        )

    def write_results(self) -> None:
        """``results.csv``: the run's figures (released under the rule) as one long table,
        with the practices' rows when the notebook recorded them."""

        rows = []
        if self.study is not None:
            rows += figures_rows(
                self.run_name, self.study.figures(), self.rule, self.params.ci_method
            )
        rows += getattr(self, "_practice_rows", [])
        write_results(rows, inside(self.out, self.out / "results.csv"))

    def finish(self):
        """The run's last step: write what it did (``disclosure.json``) and its figures
        (``results.csv``, what ``analysis combine`` and the batch index read), and show
        what disclosure control did (Markdown). A run that does not call it leaves no
        ``results.csv`` (a batch reports the run as failed)."""
        self._write_disclosure()
        self.write_results()
        return self.disclosure_summary(write=False)

    def disclosure_summary(self, write: bool = True):
        """What disclosure control did to this notebook's tables, and why (Markdown);
        ``write``: also write the run's outputs, as :meth:`finish` does."""
        from IPython.display import Markdown

        rule = self.rule
        if write:
            self._write_disclosure()
            self.write_results()
        if rule is None:
            why = (
                "synthetic data"
                if self.is_synthetic
                else "the parameter disclosure = off: NOT FOR RELEASE"
            )
            return Markdown(f"*Disclosure control: none ({why}).*")
        rows = "\n".join(
            f"| {name} | {v['cells_withheld']} | {v['rows_left_out']} |"
            for name, v in sorted(self.tables.items())
        )
        stamp = (
            ""
            if rule.for_release
            else "\n\n**NOT FOR RELEASE**: the settings are weaker than the rule's own."
        )
        return Markdown(
            f"### Disclosure control\n\n{escape(rule.describe())}; statistics of a withheld "
            "group are withheld with it; shares and intervals are computed from released counts; "
            "where one withheld cell of a partition could be recovered by subtraction from a "
            "published total, the next smallest cell is withheld too; rows that exist only where "
            f"patients are (ages, codes, combinations) are left out when withheld.{stamp}\n\n"
            f"| table | cells withheld | rows left out |\n|---|---|---|\n{rows}"
        )

    def guard(self):
        """A context in which an error about data not marked synthetic is replaced by
        one that says how to see it (the message may quote a patient's values)."""
        import contextlib

        run = self

        @contextlib.contextmanager
        def _guard():
            try:
                yield
            except Exception as exc:
                if run.is_synthetic:
                    raise
                raise withheld_error(exc, run.data, notebook=run.notebook) from None

        return _guard()

    def open_database(self):
        """The run's database, validated (errors on real data withheld as by :meth:`guard`)."""

        with self.guard():
            db = open_database(self.data)
        self._fingerprint = db.fingerprint()
        return db

    def save_figure(self, fig, name: str) -> dict:
        safe_name(name, "Figure name")
        if isinstance(fig, NotDrawn):  # nothing released to draw: no file, said
            self.figures[name] = f"not drawn: {fig.reason}"
            self._write_disclosure()
            return {}
        self.figures[name] = "drawn from this run's released tables"
        self._write_disclosure()
        return style.save_figure(fig, inside(self.out, self.out / "figures"), name)

    def compare_practices(self, table, left_out: int = 0) -> bool:
        """Whether there are practices to compare (two or more released,
        :func:`analysis.practices.comparable`). When not, says why in one sentence and
        marks the notebook's comparison sections (cells tagged ``compare``) to be left out
        of the HTML report (:data:`HIDE_TAGS` in this output's metadata)."""
        from IPython.display import Markdown, display

        if comparable(len(table)):
            return True
        display(
            Markdown(no_comparison_words(len(table), left_out)),
            metadata={HIDE_TAGS: ["compare"]},
        )
        return False

    def show_figure(self, fig, name: str):
        """Save (PNG + SVG) and return the figure so the notebook displays it inline; a
        figure not drawn (:class:`analysis.plots.NotDrawn`) is said in one sentence."""

        self.save_figure(fig, name)
        if isinstance(fig, NotDrawn):
            from IPython.display import Markdown, display

            display(Markdown(f"*{fig.sentence()}*"))
            return None
        return fig


def _decimals_needed(values, digits: int) -> int:
    """The fewest decimals (up to ``digits``) that show every value exactly: a value
    rounded to 1 decimal prints as "57.8", not "57.80"."""
    import numpy as np

    for d in range(digits + 1):
        if np.allclose(values, np.round(values, d), rtol=0, atol=1e-9):
            return d
    return digits


def display_table(
    df: pd.DataFrame,
    index: str | None = None,
    digits: int = 2,
    withheld: dict | None = None,
    why: dict | None = None,
):
    """A table for display: counts as integers ("2,503", also in a column that holds an
    expectation such as 60.5), other numbers with the decimals they carry (at most
    ``digits``), p-values with 2 significant digits; a missing value in a table under
    disclosure control reads "withheld"."""
    import numpy as np

    d = df.set_index(index) if index else df
    fmt = {}
    for col in d.columns:
        v = d[col]
        if v.dtype == bool or not np.issubdtype(v.dtype, np.number):
            continue
        finite = v.dropna().to_numpy(dtype=float)
        name = str(col)
        if "p_value" in name:
            fmt[col] = "{:.2g}"
        elif not name.startswith(("pct", "ci_", "mean", "sd", "smd", "odds", "or_", "share")):
            k = _decimals_needed(finite, digits) if len(finite) else 0
            fmt[col] = lambda x, k=k: f"{x:,.0f}" if float(x).is_integer() else f"{x:,.{k}f}"
        else:
            k = _decimals_needed(finite, digits) if len(finite) else digits
            fmt[col] = "{:,.%sf}".replace("%s", str(k))
    styler = d.style.format(fmt, na_rep="", escape="html")
    for col, rows in (withheld or {}).items():
        if col in d.columns and rows:
            keep = fmt.get(col)
            styler = styler.format(
                (
                    lambda x, f=keep: "withheld"
                    if pd.isna(x)
                    else (f(x) if callable(f) else (f.format(x) if f else str(x)))
                ),
                subset=pd.IndexSlice[d.index[sorted(rows)], [col]],
                escape="html",
            )
    for col, rows in (why or {}).items():  # the reason, where the step knows it
        for pos, word in rows.items():
            if col in d.columns and pos < len(d) and pd.isna(d[col].iloc[pos]):
                styler = styler.format(
                    lambda x, w=word: f"withheld ({w})",
                    subset=pd.IndexSlice[d.index[[pos]], [col]],
                )
    styler = styler.format_index(escape="html", axis=0).format_index(escape="html", axis=1)
    styler = styler.set_table_styles(
        [
            {"selector": "td, th", "props": "text-align: right; padding: 2px 8px;"},
            {"selector": "td.col0, th.col_heading.col0", "props": "text-align: left;"},
        ]
    )
    if not index:
        styler = styler.hide(axis="index")
    return styler


def notebook_params(given: dict, notebook: str) -> Params:
    """The parameter set of a notebook: the defaults, then ``params_file`` (a YAML of any
    parameters), then the values of the parameters cell and of papermill's ``-p`` that
    differ from the defaults (a literal default in the cell does not undo the file)."""

    merged = {}
    if given.get("params_file"):
        merged.update(read_params_file(resolve(given["params_file"])))
    for k, v in given.items():
        if k not in Params.names():
            continue
        default = DEFAULTS[k]
        same = list(v) == list(default) if isinstance(v, list | tuple) else v == default
        if k not in merged or not same:
            merged[k] = v
    return Params.from_mapping(merged, source=f"notebook {notebook}")


def start(
    namespace: dict,
    *,
    notebook: str,
    study: bool = True,
    severities=(),
    episode_cap=None,
    condition_lists=None,
    drug_counts: bool = False,
    by_practice: bool = False,
) -> NotebookRun:
    """Check the notebook's parameters, build the parameter set, open the study.

    The cell that calls it can be run again in the same kernel (after editing a
    parameter): the names the first call saw, any name of a parameter, and any name close
    to one (a misspelling, refused), are read again; what later cells defined (``run``,
    ``study``, tables) is not a parameter."""

    given = injected_parameters(namespace)
    first = namespace.get(_FIRST_NAMES)
    if isinstance(first, tuple):
        import difflib

        known = set(first) | set(Params.names()) | set(RUN_PARAMETERS)
        names = [*Params.names(), *RUN_PARAMETERS]
        given = {
            k: v
            for k, v in given.items()
            # a name close to a parameter's is a misspelt parameter: refused by name
            if k in known or difflib.get_close_matches(k, names, n=1, cutoff=0.85)
        }
    refuse_passwords(given, f"notebook {notebook}")
    check_notebook_parameters(given, notebook=notebook)
    namespace.setdefault(_FIRST_NAMES, tuple(given))
    params = notebook_params(given, notebook)
    data = resolve(given.get("data"), paths.SYNTHETIC)
    out = (
        resolve(given["output_dir"], None)
        if given.get("output_dir")
        else interactive_folder(notebook, params, data)
    )
    run = NotebookRun(notebook=notebook, params=params, data=data, out=out)
    _inline_style()
    if study:
        with run.guard():
            run.study = run_study(
                data,
                params,
                severities=severities,
                episode_cap=episode_cap,
                condition_lists=condition_lists,
                drug_counts=drug_counts,
                by_practice=by_practice,
            )
        if run.rule is not None:
            # the audit of the figures with what earlier runs released comes before
            # anything is shown: a group it withholds is withheld everywhere
            with run.guard():
                run.auditor  # noqa: B018
    return run


def interactive_folder(notebook: str, params: Params, data: Path) -> Path:
    """Where a run without ``output_dir`` writes: ``reports/interactive/<notebook>`` with the
    default parameters on the default data, else one folder per parameter set, named like
    a batch run: ``<changes>-<notebook>`` (e.g. ``elderly_age_80-03_eligibility``), a short
    hash of the changes where they would make too long a name. A folder of the same
    parameter set is replaced (said), never one of another."""
    import hashlib
    import re

    default = Params().to_dict()
    changes = {k: v for k, v in params.to_dict().items() if v != default.get(k)}
    if Path(data).resolve() != Path(paths.SYNTHETIC).resolve():
        changes = {"data": Path(str(data)).name, **changes}
    if not changes:
        return paths.REPORTS / "interactive" / notebook
    words = "_".join(f"{k}_{v}" for k, v in changes.items())
    words = re.sub(r"[^A-Za-z0-9_-]+", "_", words).strip("_")
    if len(words) > 60:
        digest = hashlib.sha256(json.dumps(changes, sort_keys=True, default=str).encode())
        words = f"{words[:40].rstrip('_')}_{digest.hexdigest()[:8]}"
    folder = paths.REPORTS / "interactive" / f"{words}-{notebook}"
    if folder.exists():
        print(f"Replacing the outputs of an earlier run with the same parameters in {folder}.")
    return folder


def _inline_style() -> None:
    style.apply()
    try:
        import matplotlib_inline.backend_inline as bi

        bi.set_matplotlib_formats("png")
    except Exception:  # not in a kernel
        pass
    pd.set_option("display.precision", 2)
    pd.set_option("display.max_columns", 30)
    pd.set_option("display.width", 160)
