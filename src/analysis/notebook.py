"""What a notebook needs to stay thin: check its parameters, open the study, save outputs.

A notebook's ``parameters`` cell holds literal defaults only; the next cell calls
:func:`start` with ``globals()``, which refuses any name that is not a parameter (papermill
injects whatever it is given, so ``-p elderly_agee 80`` would otherwise run the default),
builds the parameter set and the study, and returns a :class:`NotebookRun`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import paths, style
from analysis.errors import AnalysisError
from analysis.params import Params, check_names

# names every notebook may take besides the analysis parameters
RUN_PARAMETERS = ("data", "output_dir", "grid", "published")
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def resolve(path: str | os.PathLike | None, default: Path | None = None) -> Path | None:
    """A path as given, or relative to the project root when it does not exist as given
    (notebooks run with the notebook folder as working directory in JupyterLab)."""
    if path in (None, ""):
        return default
    from analysis.engines import is_url

    if is_url(path):
        return path  # a database URL (its password comes from the environment)
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return paths.ROOT / p


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
        check_names(dict.fromkeys(names), source=f"notebook {notebook}", allowed_extra=RUN_PARAMETERS)
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

    @property
    def data_label(self) -> str:
        return self.study.data_label if self.study else str(self.data)

    def header(self, title: str):
        from IPython.display import Markdown

        s = self.study
        kind = "**synthetic default data** (not real patients)" if s.is_synthetic else "**user data**"
        rule = s.disclosure_rule
        note = (f"\n\n**Disclosure control**: {rule.describe()}; statistics of withheld groups are "
                "withheld with them, and percentages are computed from the released counts."
                if rule else "")
        where = self.data.name if isinstance(self.data, Path) else str(self.data)
        return Markdown(f"## {title}\n\nData: {kind}, `{where}`, n = {s.n_released:,} patients. "
                        f"Index date {self.params.index_date}; look-back window "
                        f"{self.params.window_start} to {self.params.index_date}.{note}")

    def show(self, df: pd.DataFrame, index: str | None = None, digits: int = 2):
        """A table for display: whole numbers without decimals, other numbers with
        ``digits`` decimals, p-values with 2 significant digits, empty cells blank."""
        return display_table(df, index=index, digits=digits)

    @property
    def rule(self):
        """The disclosure rule in force (None for synthetic data under ``auto``)."""
        from analysis import disclosure
        from analysis.data import is_marked_synthetic

        synthetic = self.study.is_synthetic if self.study else (
            isinstance(self.data, Path) and is_marked_synthetic(self.data))
        return disclosure.resolve(self.params, synthetic)

    def cube_label(self, cube) -> str:
        """'synthetic default data, n = ...' for a cube the notebook built itself."""
        rule = self.rule
        kind = "synthetic default data" if cube.is_synthetic else "user data"
        n = rule.round(cube.n_total) if rule else cube.n_total
        return f"{kind}, n = {n:,}" + (f" ({rule.describe()})" if rule else "")

    def save_table(self, df: pd.DataFrame, name: str) -> Path:
        """Protect the table *in place* under the disclosure rule (so what the notebook
        shows and plots next is what is released), then write it as CSV."""
        from analysis import disclosure

        if name == "risk_condition_odds_ratios":
            protected, n = disclosure.protect_regression(df, self.rule)
        else:
            protected, n = disclosure.protect_table(df, name, self.rule)
        if protected is not df:
            gone = df.index.difference(protected.index)
            if len(gone):  # rows withheld whole (rare combinations)
                df.drop(index=gone, inplace=True)
            for col in protected.columns:
                df[col] = protected[col]
        if self.rule is not None and not n:
            # tables protected upstream (attrition, grid): count the withheld count cells
            countcols = [c for c in df.columns if c in ("n", "numerator") or str(c).endswith("_n")]
            n = int(sum(int(df[c].isna().sum()) for c in countcols))
        self.suppressed[name] = n
        self._write_disclosure()
        return write_csv(df, self.out / "tables" / f"{name}.csv")

    def _write_disclosure(self) -> None:
        import json

        rule = self.rule
        record = {"rule": rule.name if rule else "off",
                  "description": rule.describe() if rule else "no disclosure control",
                  "data_is_synthetic": bool(self.study.is_synthetic) if self.study else None,
                  "suppressed_cells": self.suppressed}
        target = self.out / "disclosure.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(".disclosure.json.tmp")
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, target)

    def disclosure_summary(self):
        """What disclosure control did to this notebook's tables, and why (Markdown)."""
        from IPython.display import Markdown

        rule = self.rule
        self._write_disclosure()
        if rule is None:
            synthetic = self.study.is_synthetic if self.study else True
            why = "synthetic data" if synthetic else "the parameter disclosure = off: NOT FOR RELEASE"
            return Markdown(f"*Disclosure control: none ({why}).*")
        rows = "\n".join(f"| {name} | {n} |" for name, n in sorted(self.suppressed.items()))
        return Markdown(f"### Disclosure control\n\n{rule.describe()}; statistics of a withheld group "
                        "are withheld with it; where one withheld cell of a partition could be recovered "
                        "by subtraction from a published total, the next smallest cell is withheld too.\n\n"
                        f"| table | cells withheld |\n|---|---|\n{rows}")

    def save_figure(self, fig, name: str) -> dict:
        return style.save_figure(fig, self.out / "figures", name)

    def show_figure(self, fig, name: str):
        """Save (PNG + SVG) and return the figure so the notebook displays it inline."""
        self.save_figure(fig, name)
        return fig


def display_table(df: pd.DataFrame, index: str | None = None, digits: int = 2):
    import numpy as np

    d = df.set_index(index) if index else df
    fmt = {}
    for col in d.columns:
        v = d[col]
        if v.dtype == bool or not np.issubdtype(v.dtype, np.number):
            continue
        finite = v.dropna()
        if "p_value" in str(col):
            fmt[col] = "{:.2g}"
        elif len(finite) and (finite == finite.round()).all() and not str(col).startswith(("pct", "ci_", "mean", "sd")):
            fmt[col] = "{:,.0f}"
        else:
            fmt[col] = "{:,.%sf}".replace("%s", str(digits))
    styler = d.style.format(fmt, na_rep="")
    styler = styler.set_table_styles([{"selector": "td, th", "props": "text-align: right; padding: 2px 8px;"},
                                      {"selector": "td.col0, th.col_heading.col0", "props": "text-align: left;"}])
    if not index:
        styler = styler.hide(axis="index")
    return styler


def write_csv(df: pd.DataFrame, target: Path) -> Path:
    """Write a table atomically with a fixed float format (byte-identical reruns)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".csv", dir=target.parent)
    os.close(fd)
    try:
        df.to_csv(tmp, index=False, float_format="%.10g", lineterminator="\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def start(namespace: dict, *, notebook: str, study: bool = True, severities=(),
          episode_cap=None, condition_lists=None, drug_counts: bool = False) -> NotebookRun:
    """Check the notebook's parameters, build the parameter set, open the study."""
    given = injected_parameters(namespace)
    check_notebook_parameters(given, notebook=notebook)
    overrides = {k: v for k, v in given.items() if k in Params.names()}
    params = Params.from_mapping(overrides, source=f"notebook {notebook}")
    data = resolve(given.get("data"), paths.SYNTHETIC)
    out = resolve(given.get("output_dir"), paths.REPORTS / "interactive" / notebook)
    run = NotebookRun(notebook=notebook, params=params, data=data, out=out)
    _inline_style()
    if study:
        from analysis.study import run_study

        run.study = run_study(data, params, severities=severities, episode_cap=episode_cap,
                              condition_lists=condition_lists, drug_counts=drug_counts)
    return run


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
