"""Sensitivity of the eligibility estimate to the definitions and the benefit assumption.

A grid file (YAML) names variations over the base parameters; every combination is one
cell. All cells are answered from one profile cube (one pass over the data): the cube
holds qualifying-episode counts at every severity threshold of the grid, capped at the
largest recurrence threshold, and the risk-condition groups as bit masks.

In a cell the benefit fraction is fixed at the cell's value, so the cell's interval is
the sampling interval of the target proportion times that fraction (the benefit
assumption is what the grid varies).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import paths
from analysis.cohort import ProfileCube, nested_groups, profile_cube
from analysis.data import Database
from analysis.eligibility import INTERVAL_ESTIMATES, eligibility_estimate
from analysis.errors import AnalysisError
from analysis.inputs import read_yaml_mapping
from analysis.params import Params, check_names
from analysis.rules import nested_withheld, nested_withheld_by_masks, refuse_ages_above_top


@dataclass(frozen=True)
class Grid:
    base: dict
    vary: dict  # name -> list of (label, value)
    source: str

    @property
    def size(self) -> int:
        return int(np.prod([len(v) for v in self.vary.values()])) if self.vary else 1


def load_grid(path: str | Path | None = None) -> Grid:
    """Read and check a grid file (unknown parameter names are refused)."""

    path = Path(path or paths.DEFAULT_GRID)
    raw = read_yaml_mapping(path, "Grid file", allowed={"base", "vary"}, holds="base, vary")
    base = raw.get("base") or {}
    vary_raw = raw.get("vary") or {}
    check_names(base, source=f"{path} (base)")
    check_names(vary_raw, source=f"{path} (vary)")
    vary = {}
    for name, values in vary_raw.items():
        if isinstance(values, dict):
            items = list(values.items())
        elif isinstance(values, list) and values:
            items = [(str(v), v) for v in values]
        else:
            raise AnalysisError(
                f"Grid file {path}: 'vary.{name}' must be a non-empty list "
                "or a mapping of named values."
            )
        vary[name] = items
    grid = Grid(base=base, vary=vary, source=str(path))
    # every cell must be a valid parameter set
    base_params = Params.from_mapping(base, source=f"{path} (base)")
    for name, items in vary.items():
        for label, value in items:
            _cell_params(base_params, {name: value}, source=f"{path} (vary.{name}={label})")
    return grid


def _cell_params(base: Params, changes: dict, source: str) -> Params:
    merged = base.to_dict()
    merged.update(changes)
    if "benefit_fraction" in changes:
        f = float(changes["benefit_fraction"])
        merged["benefit_low"] = min(merged["benefit_low"], f)
        merged["benefit_high"] = max(merged["benefit_high"], f)
    return Params.from_mapping(merged, source=source)


def with_base(grid: Grid, base: Params) -> Grid:
    """The grid with each varied parameter's base value added where it is missing (so the
    base cell, the tornado and the heatmap always exist); its label is the value, or
    ``base`` for a list."""
    vary = {}
    for name, items in grid.vary.items():
        b = getattr(base, name)
        if not any(_same(v, b) for _, v in items):
            label = "base" if isinstance(b, list | tuple) else str(b)
            items = [*items, (label, list(b) if isinstance(b, tuple) else b)]
            if not isinstance(b, list | tuple):
                items.sort(key=lambda lv: float(lv[1]))
        vary[name] = items
    return Grid(base=grid.base, vary=vary, source=grid.source)


def grid_cube(db: Database, base: Params, grid: Grid) -> ProfileCube:
    """The one cube that answers every cell of ``grid``."""
    grid = with_base(grid, base)
    sev = {int(v) for _, v in grid.vary.get("min_severity", [])}
    cap = max([int(v) for _, v in grid.vary.get("min_episodes", [])] + [base.min_episodes])
    conds = list(base.risk_conditions)
    for _, v in grid.vary.get("risk_conditions", []):
        conds += [x for x in v if x not in conds]
    drugs = list(base.risk_drugs)
    for _, v in grid.vary.get("risk_drugs", []):
        drugs += [x for x in v if x not in drugs]
    return profile_cube(
        db, base, severities=sev, episode_cap=cap, condition_lists=conds, drug_lists=drugs
    )


# the estimates of a grid cell, in table order: those of the estimate (its fields) but the
# rate per 1000 and the one-list prediction
GRID_ESTIMATES = tuple(
    n for n in INTERVAL_ESTIMATES if not n.startswith(("per_1000", "in_one_list"))
)

UNSUPPORTED = {
    "index_date",
    "lookback_years",
    "pain_sites",
    "pain_causes",
    "events_outside_registration",
}


def sensitivity_table(
    cube: ProfileCube, grid: Grid, base: Params | None = None, rule=None
) -> pd.DataFrame:
    """One tidy row per cell: the varied values, the target n, and the eligibility
    estimate per GP list and as % of all patients with its interval."""
    base = base or cube.params
    bad = UNSUPPORTED & set(grid.vary)
    if bad:
        raise AnalysisError(
            f"{grid.source}: the grid cannot vary {', '.join(sorted(bad))} "
            "(they change which episodes are read; run separate analyses)."
        )
    base = _cell_params(base, grid.base, source=f"{grid.source} (base)")
    grid = with_base(grid, base)
    names = list(grid.vary)
    if rule is not None:  # top-coding at 90 holds in every cell too
        for _label, age in grid.vary.get("elderly_age", []):
            refuse_ages_above_top(base.replace(elderly_age=age), rule, grid.source)
    rows = []
    n_all = cube.n_total
    combos = list(itertools.product(*[grid.vary[n] for n in names]))
    cells = []  # (changes, parameters) per cell
    masks = {"target": [], "pain": []}  # the cube cells of each cell's groups
    for combo in combos:
        changes = {n: v for n, (_, v) in zip(names, combo, strict=True)}
        p = _cell_params(base, changes, source=grid.source).replace(benefit_distribution="fixed")
        f = cube.flag_arrays(p)
        cells.append((changes, p))
        for k in masks:
            masks[k].append(f[k])
    held = {"target": set(), "pain": set()}
    if rule is not None:
        # cells are nested (aged 80 lies within aged 75): a cell within the threshold of a
        # released cell that contains it, or that it contains, is withheld, as the
        # difference is a small group; a cell of the same patients as the figures' pain
        # cohort or target subgroup is decided as the figures decide (released there)

        figures_held = nested_withheld(*nested_groups(cube, cube.params), rule)
        figures_flags = cube.flag_arrays(cube.params)
        for k, ms in masks.items():
            same = [i for i, m in enumerate(ms) if np.array_equal(m, figures_flags[k])]
            held[k] = nested_withheld_by_masks(
                [cube.count(m) for m in ms],
                ms,
                rule,
                keep=[] if k in figures_held else same,
                withheld=same if k in figures_held else [],
            )
    for i, (combo, (changes, p)) in enumerate(zip(combos, cells, strict=True)):
        n_t, n_pain = cube.count(masks["target"][i]), cube.count(masks["pain"][i])
        n_pop = n_all
        if rule is not None:  # estimates from released counts only
            n_t = None if i in held["target"] else rule.release(n_t)
            n_pain = None if i in held["pain"] else rule.release(n_pain)
            n_t, n_pain, n_pop = (
                np.nan if v is None else v for v in (n_t, n_pain, rule.release(n_pop))
            )
        est = (
            eligibility_estimate(int(n_t), int(n_pop), p, prediction=False)
            if n_t == n_t and n_pop == n_pop
            else None
        )
        row = {n: label for n, (label, _) in zip(names, combo, strict=True)}
        row.update(
            {
                "is_base": all(_same(changes[n], getattr(base, n)) for n in names),
                "population_n": n_pop,
                "pain_n": n_pain,
                "target_n": n_t,
                "benefit_used": p.benefit_fraction,
                "interval": "sampling of the target proportion only (benefit fixed in the cell)",
            }
        )
        for k in GRID_ESTIMATES:
            row[k] = getattr(est, k) if est else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _same(a, b) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return a == b


def tornado_table(table: pd.DataFrame, grid: Grid, base: Params) -> pd.DataFrame:
    """One-at-a-time ranges: for each varied parameter, the lowest and highest estimate
    (per GP list) over its values with every other parameter at its base value, sorted by
    the width of the swing (largest first). ``withheld_values`` lists the values whose cell
    is withheld by disclosure control (the range is over the others only)."""
    grid = with_base(grid, base)
    names = list(grid.vary)
    base_labels = {}
    for n in names:
        for label, v in grid.vary[n]:
            if _same(v, getattr(base, n)):
                base_labels[n] = label
    missing = [n for n in names if n not in base_labels]
    if missing:
        raise AnalysisError(
            f"{grid.source}: the base value of {', '.join(missing)} is not "
            "among the grid's values, so a one-at-a-time range is undefined."
        )
    base_row = table
    for n in names:
        base_row = base_row[base_row[n] == base_labels[n]]
    base_value = float(base_row["per_gp_list"].iloc[0]) if len(base_row) else np.nan
    rows = []
    for n in names:
        sub = table
        for m in names:
            if m != n:
                sub = sub[sub[m] == base_labels[m]]
        withheld = ", ".join(str(v) for v in sub.loc[sub["per_gp_list"].isna(), n])
        if sub["per_gp_list"].isna().all():  # every cell withheld by disclosure control
            rows.append(
                {
                    "parameter": n,
                    "base_value": base_labels[n],
                    "base_estimate": base_value,
                    "low_value": "",
                    "low_estimate": np.nan,
                    "high_value": "",
                    "high_estimate": np.nan,
                    "swing": np.nan,
                    "withheld_values": withheld,
                }
            )
            continue
        lo = sub.loc[sub["per_gp_list"].idxmin()]
        hi = sub.loc[sub["per_gp_list"].idxmax()]
        rows.append(
            {
                "parameter": n,
                "base_value": base_labels[n],
                "base_estimate": base_value,
                "low_value": lo[n],
                "low_estimate": float(lo["per_gp_list"]),
                "high_value": hi[n],
                "high_estimate": float(hi["per_gp_list"]),
                "swing": float(hi["per_gp_list"] - lo["per_gp_list"]),
                "withheld_values": withheld,  # values whose cell is withheld (not in the range)
            }
        )
    return pd.DataFrame(rows).sort_values("swing", ascending=False).reset_index(drop=True)


def heatmap_table(
    table: pd.DataFrame, grid: Grid, base: Params, rows: str, cols: str, value: str = "per_gp_list"
) -> pd.DataFrame:
    """``value`` for every combination of two varied parameters, the others at base."""
    grid = with_base(grid, base)
    sub = table
    for n in grid.vary:
        if n in (rows, cols):
            continue
        label = next((lab for lab, v in grid.vary[n] if _same(v, getattr(base, n))), None)
        if label is None:
            raise AnalysisError(
                f"{grid.source}: the base value of {n} is not among its grid values."
            )
        sub = sub[sub[n] == label]
    order_r = [lab for lab, _ in grid.vary[rows]]
    order_c = [lab for lab, _ in grid.vary[cols]]
    pivot = sub.pivot_table(index=rows, columns=cols, values=value, aggfunc="first")
    return pivot.reindex(index=order_r, columns=order_c)
