"""The study's figures. Each function takes a table computed by the module (never
patient-level data) and returns a matplotlib Figure with a title that says what is shown
and a caption that names the data and its n. Intervals are drawn wherever a proportion
or a mean is shown. Every table a figure is drawn from must have passed the disclosure
step (``run.save_table``); a figure of an unprotected table is refused. A figure whose
values are all withheld is not drawn: the function returns :class:`NotDrawn`, which says
why in one sentence (``run.show_figure`` shows it and writes no file).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import style
from analysis.outputs import require_released
from analysis.practices import funnel_limits, heterogeneity, outside_limits


@dataclass(frozen=True)
class NotDrawn:
    """A figure left undrawn, and why (one sentence)."""

    what: str
    reason: str = "every value it would show is withheld by disclosure control"

    def sentence(self) -> str:
        return f"{self.what[:1].upper()}{self.what[1:]} is not drawn: {self.reason}."

    def _repr_markdown_(self) -> str:
        return f"*{self.sentence()}*"


MIN_YEARS_SHOWN = 5
"""Fewest released single years (by sex) for the age distribution to be drawn."""


def _nothing(table: pd.DataFrame, columns, what: str) -> NotDrawn | None:
    """NotDrawn when ``table`` has no row or none of ``columns`` holds a value."""
    cols = [c for c in columns if c in table.columns]
    if table.empty or (cols and table[cols].isna().all().all()):
        return NotDrawn(what)
    return None


def _figure(size=style.FULL, **kw):
    import matplotlib.pyplot as plt

    style.apply()
    return plt.subplots(figsize=size, **kw)


# ----------------------------------------------------------------------------- population
def age_sex_pyramid(counts: pd.DataFrame, data_label: str, title="Age-sex pyramid"):
    """Horizontal bars: women to the right, men to the left, by 5-year age group."""
    require_released(counts, "the age-sex pyramid")
    if (nothing := _nothing(counts, ["female", "male"], "the age-sex pyramid")) is not None:
        return nothing
    fig, ax = _figure((style.FULL[0], 4.6))
    y = np.arange(len(counts))
    male, female = counts["male"].astype(float), counts["female"].astype(float)
    ax.barh(y, -male.fillna(0), color=style.MALE, label="male", height=0.85)
    ax.barh(y, female.fillna(0), color=style.FEMALE, label="female", height=0.85)
    ax.set_yticks(y, counts["age_group"])
    m = (
        max(
            np.nanmax(male.to_numpy()) if male.notna().any() else 1,
            np.nanmax(female.to_numpy()) if female.notna().any() else 1,
        )
        * 1.1
    )
    for yi, (mv, fv) in enumerate(zip(male, female, strict=True)):
        for v, side in ((mv, -1), (fv, 1)):
            if v != v:
                ax.text(
                    side * m * 0.02,
                    yi,
                    "withheld",
                    ha="right" if side < 0 else "left",
                    va="center",
                    fontsize=6,
                    color="#777777",
                )
    ax.set_xlim(-m, m)
    ticks = ax.get_xticks()
    ax.set_xticks(ticks, [f"{abs(int(t))}" for t in ticks])
    ax.set_xlim(-m, m)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlabel("patients (n)")
    ax.set_ylabel("age at the index date (completed years)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    style.add_caption(
        fig,
        style.caption(
            "Patients by 5-year age group and sex; men to the left, women to the right."
            + (
                " Under disclosure control a withheld count is marked 'withheld' and an age "
                "group whose counts are all withheld is left out."
                if "disclosure" in counts.columns
                else ""
            ),
            data_label,
        ),
    )
    return fig


def age_distribution_by_sex(counts_by_age: pd.DataFrame, age_by_sex: pd.DataFrame, data_label: str):
    """Age histogram (1-year bins) by sex, with each sex's mean and its 95% CI."""
    require_released(counts_by_age, "the age distribution")
    require_released(age_by_sex, "the age distribution")
    if (nothing := _nothing(counts_by_age, ["n"], "the age distribution by sex")) is not None:
        return nothing
    shown = int(counts_by_age["n"].notna().sum())
    if shown < MIN_YEARS_SHOWN:  # a distribution of one or two bars is no distribution
        return NotDrawn(
            "the age distribution by sex",
            f"only {shown} single year(s) of age by sex hold enough patients to be released "
            "(the age-sex pyramid shows 5-year groups)",
        )
    fig, ax = _figure()
    top = (
        float(np.nanmax(counts_by_age["n"].astype(float))) * 1.12
        if counts_by_age["n"].notna().any()
        else 1.0
    )
    lines = []
    for k, (sex, colour, label) in enumerate(
        (("F", style.FEMALE, "female"), ("M", style.MALE, "male"))
    ):
        c = counts_by_age[counts_by_age["sex"] == sex]
        ages = pd.to_numeric(c["age"], errors="coerce")
        ax.step(
            ages[ages.notna()],
            c["n"][ages.notna()],
            where="mid",
            color=colour,
            label=label,
            lw=1.2,
            marker="o" if ages.notna().sum() < 20 else None,  # a few released ages stay visible
            ms=3,
        )
        for _, r in c[ages.isna()].iterrows():  # an open-ended band such as "90+"
            lo = float(str(r["age"]).rstrip("+"))
            ax.plot([lo, lo + 5], [r["n"], r["n"]], color=colour, lw=1.2, ls=":")
            ax.annotate(
                f"{r['age']} (all ages)",
                (lo + 2.5, r["n"]),
                ha="center",
                va="bottom",
                fontsize=6,
                color=colour,
            )
        row = age_by_sex[age_by_sex["group"] == f"sex={sex}"].iloc[0]
        lines.append(_mean_marker(ax, row, label, colour, top * (1.0 - 0.05 * k)))
    ax.set_ylim(0, top * 1.08)
    shown = pd.to_numeric(counts_by_age["age"], errors="coerce").dropna()
    if "disclosure" in counts_by_age.columns and 0 < len(shown) < 20:
        ax.set_xlim(max(0, shown.min() - 10), shown.max() + 10)
        ax.text(
            0.5,
            0.5,
            f"only {len(shown)} single year(s) of age hold enough patients to be released;\n"
            "the others are withheld (the age-sex pyramid shows 5-year groups)",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=8,
            color="#777777",
        )
    if counts_by_age["n"].notna().sum() == 0:  # every single-year count withheld
        ax.set_xlim(0, 100)
        ax.text(
            0.5,
            0.5,
            "every single-year count is below the disclosure threshold: withheld\n"
            "(the age-sex pyramid shows 5-year groups)",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=8,
            color="#777777",
        )
    ax.text(
        0.99,
        0.80,
        "\n".join(lines),
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=7.5,
        bbox={"fc": "white", "ec": "#cccccc", "lw": 0.5},
    )
    ax.set_xlabel("age at the index date (completed years)")
    ax.set_ylabel("patients (n)")
    ax.set_title("Age distribution by sex")
    ax.legend(loc="upper left")
    style.add_caption(
        fig,
        style.caption(
            "Patients by single year of age; triangles mark each sex's mean age with its 95% "
            "t-interval.",
            data_label,
        ),
    )
    return fig


def _mean_marker(ax, row, label: str, colour, y: float) -> str:
    """A sex's mean age as a triangle at height ``y`` with its interval (where released);
    returns the line that says it."""
    if row["mean"] != row["mean"]:
        return f"{label}: mean withheld"
    if row["mean_ci_low"] == row["mean_ci_low"]:
        ax.errorbar(
            [row["mean"]],
            [y],
            xerr=[[row["mean"] - row["mean_ci_low"]], [row["mean_ci_high"] - row["mean"]]],
            fmt="v",
            color=colour,
            capsize=3,
            ms=5,
        )
        return (
            f"{label}: mean {row['mean']:.1f} (95% CI "
            f"{row['mean_ci_low']:.1f}-{row['mean_ci_high']:.1f})"
        )
    ax.plot([row["mean"]], [y], "v", color=colour, ms=5)
    return f"{label}: mean {row['mean']:.1f} (interval withheld)"


# ----------------------------------------------------------------------------- proportions
def proportion_forest(
    table: pd.DataFrame,
    label_col: str,
    title: str,
    xlabel: str,
    data_label: str,
    note: str = "",
    colour=style.OKABE_ITO["blue"],
):
    """Point estimates (percent) with interval bars, one row per line of ``table``."""
    require_released(table, "proportion forest")
    if (nothing := _nothing(table, ["pct"], f"the figure {title!r}")) is not None:
        return nothing
    t = table.reset_index(drop=True)
    fig, ax = _figure((style.FULL[0], 0.9 + 0.32 * len(t)))
    y = np.arange(len(t))[::-1]
    has_ci = t["ci_low"].notna() & t["pct"].notna()
    ax.errorbar(
        t["pct"][has_ci].to_numpy(float),
        y[has_ci.to_numpy()],
        xerr=[
            (t["pct"] - t["ci_low"])[has_ci].to_numpy(float),
            (t["ci_high"] - t["pct"])[has_ci].to_numpy(float),
        ],
        fmt="o",
        color=colour,
        ecolor=colour,
        capsize=3,
        ms=5,
        lw=1.2,
    )
    no_ci = t["ci_low"].isna() & t["pct"].notna()
    ax.plot(t["pct"][no_ci], y[no_ci.to_numpy()], "o", color=colour, ms=5)
    ax.set_yticks(y, t[label_col])
    for yi, (_, r) in zip(y, t.iterrows(), strict=True):
        if r["pct"] != r["pct"]:
            ax.annotate(
                "withheld (disclosure control)",
                (0, yi),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=7.5,
                color="#777777",
            )
            continue
        n_txt = f"{int(r['numerator'])}/{int(r['denominator'])}"
        x = r["ci_high"] if r["ci_high"] == r["ci_high"] else r["pct"]
        ax.annotate(
            f"{r['pct']:.1f}% ({n_txt})",
            (x, yi),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=7.5,
        )
    hi = t["ci_high"].where(t["ci_high"].notna(), t["pct"])
    ax.set_xlim(0, min(100, max((hi.max() if hi.notna().any() else 0) * 1.35, 5)))
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    method = t["method"].iloc[0] if "method" in t else "wilson"
    level = t["level"].iloc[0] if "level" in t else 0.95
    style.add_caption(
        fig,
        style.caption(
            f"{note} Bars: {level:.0%} {method.replace('_', '-').title()} intervals.".strip(),
            data_label,
        ),
    )
    return fig


def upset(combos: pd.DataFrame, condition_cols: list[str], data_label: str, top: int = 15):
    """UpSet-style figure: bars of patients per exact combination of risk conditions,
    with a dot matrix showing the combination below each bar."""
    require_released(combos, "upset")
    if (
        nothing := _nothing(combos, ["n"], "the UpSet plot of risk-condition combinations")
    ) is not None:
        return nothing
    import matplotlib.pyplot as plt

    style.apply()
    t = combos.head(top).reset_index(drop=True)
    fig, (ax, axm) = plt.subplots(
        2,
        1,
        figsize=(style.FULL[0], 4.8),
        sharex=True,
        gridspec_kw={"height_ratios": [2.2, 1.6], "hspace": 0.05},
    )
    x = np.arange(len(t))
    if len(t) == 0:
        ax.text(
            0.5,
            0.5,
            "every combination is below the disclosure threshold: withheld",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="#777777",
        )
        ax.set_ylim(0, 1)
        ax.set_yticks([])
    ax.bar(x, t["n"], color=style.OKABE_ITO["blue"])
    for xi, n in zip(x, t["n"], strict=True):
        ax.annotate(
            f"{n}", (xi, n), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=7
        )
    ax.set_ylabel("patients (n)")
    ax.set_title("Co-occurrence of risk conditions in the pain cohort")
    for yi, col in enumerate(condition_cols):
        on = t[col].to_numpy()
        axm.scatter(x, np.full(len(x), yi), s=28, color=np.where(on, "black", "#dddddd"), zorder=3)
    for xi in x:
        ys = [yi for yi, col in enumerate(condition_cols) if t.loc[xi, col]]
        if len(ys) > 1:
            axm.plot([xi, xi], [min(ys), max(ys)], color="black", lw=1.2, zorder=2)
    axm.set_yticks(range(len(condition_cols)), condition_cols)
    axm.set_ylim(-0.6, len(condition_cols) - 0.4)
    axm.set_xticks([])
    axm.spines[["bottom", "left"]].set_visible(False)
    axm.tick_params(left=False)
    style.add_caption(
        fig,
        style.caption(
            f"The {len(t)} most frequent exact combinations of risk-condition groups among "
            "patients of the pain cohort (an empty column: no risk condition); combinations below "
            "the disclosure threshold, if any, are left out.",
            data_label,
        ),
    )
    return fig


def odds_ratio_forest(table: pd.DataFrame, data_label: str, title: str):
    """Odds ratios with intervals on a log scale, reference line at 1."""
    require_released(table, "odds ratio forest")
    if (nothing := _nothing(table, ["odds_ratio"], "the odds-ratio plot")) is not None:
        return nothing
    t = table.reset_index(drop=True)
    fig, ax = _figure((style.FULL[0], 0.9 + 0.4 * len(t)))
    y = np.arange(len(t))[::-1]
    ok = (
        np.isfinite(t["odds_ratio"])
        & np.isfinite(t["ci_low"])
        & np.isfinite(t["ci_high"])
        & (t["ci_low"] > 0)
    ).to_numpy()
    ax.errorbar(
        t["odds_ratio"][ok].to_numpy(float),
        y[ok],
        xerr=[
            (t["odds_ratio"] - t["ci_low"])[ok].to_numpy(float),
            (t["ci_high"] - t["odds_ratio"])[ok].to_numpy(float),
        ],
        fmt="s",
        color=style.OKABE_ITO["vermillion"],
        capsize=3,
        ms=5,
        lw=1.2,
    )
    ax.axvline(1, color="black", lw=0.7, ls="--")
    ax.set_xscale("log")
    ax.set_yticks(y, t["term"])
    methods = t["method"] if "method" in t.columns else pd.Series("", index=t.index)
    firth = methods.str.startswith("Firth")
    for yi, (_, r), is_firth in zip(y, t.iterrows(), firth, strict=True):
        if r["odds_ratio"] != r["odds_ratio"]:
            why = (
                str(r.get("method", ""))
                if str(r.get("method", "")).startswith("not estimable")
                else "withheld (small group)"
            )
            ax.annotate(
                why,
                (1, yi),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=7.5,
                color="#777777",
            )
            continue
        mark = " \u2020" if is_firth else ""
        ax.annotate(
            f"{r['odds_ratio']:.2f} ({r['ci_low']:.2f}-{r['ci_high']:.2f}){mark}",
            (r["ci_high"], yi),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=7.5,
        )
    finite_lo = t["ci_low"][np.isfinite(t["ci_low"]) & (t["ci_low"] > 0)]
    finite_hi = t["ci_high"][np.isfinite(t["ci_high"])]
    lo = finite_lo.min() if len(finite_lo) else 0.5
    hi = finite_hi.max() if len(finite_hi) else 2.0
    left, right = min(lo, 1) / 1.5, max(hi, 1) * (3 if hi < 100 else 30)
    ax.set_xlim(left, right)
    # ratios read as ratios (0.5, 1, 2, 5, 10), not as powers of ten
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ticks = [m * 10.0**e for e in range(-3, 4) for m in (1, 2, 5)]
    ax.xaxis.set_major_locator(FixedLocator([v for v in ticks if left <= v <= right]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_ylim(-0.7, len(t) - 0.3)
    ax.set_xlabel("odds ratio (log scale)")
    ax.set_title(title)
    how = (
        "bars: 95% Wald intervals (maximum likelihood)"
        if not firth.any()
        else "\u2020 Firth's penalized likelihood with profile-likelihood intervals (sparse data: "
        "an empty "
        "cell or separation)"
        + (
            "; other rows: maximum likelihood, Wald intervals"
            if (~firth).any() and methods[~firth].str.startswith("maximum").any()
            else ""
        )
    )
    style.add_caption(
        fig,
        style.caption(
            f"Logistic regression on grouped binomial data; {how}; reference categories: youngest "
            f"age "
            "band, female.",
            data_label,
        ),
    )
    return fig


# ----------------------------------------------------------------------------- eligibility
def _share(pct, of: str) -> str:
    """'97.09% of the database', or 'share of the database withheld'."""
    return f"share of {of} withheld" if pct != pct or pct is None else f"{pct:.2f}% of {of}"


FLOW_TITLES = {
    "database": "Every patient in the database",
    "all_patients": "All patients (the population)",
    "pain": "Pain cohort",
    "pain_risk_condition": "Pain cohort with a risk condition",
    "target": "Target subgroup",
    "candidates": "Expected candidates (local treatment)",
}
"""The flow diagram's box titles, by attrition step."""


def flow_layout(attrition: pd.DataFrame):
    """Where each box of the flow diagram goes: (rows, left_out, depth, levels, box). Rows:
    step -> attrition row (the left-out reasons apart); depth: step -> its level (0 the
    top); box: step -> (x from, x to) in axes fractions (siblings share their parent's
    span; the population beside the left-out box)."""
    left_out = [r for _, r in attrition.iterrows() if str(r["step"]).startswith("excluded_")]
    rows = {
        r["step"]: r for _, r in attrition.iterrows() if not str(r["step"]).startswith("excluded_")
    }
    depth, children = {}, {}
    for step, r in rows.items():
        prev = r["previous_step"]
        depth[step] = depth[prev] + 1 if prev else 0
        children.setdefault(prev, []).append(step)
    levels = max(depth.values()) + 1
    span = {}
    for step in rows:
        prev = rows[step]["previous_step"]
        if not prev or prev == "database":  # the population spans the width
            span[step] = (0.02, 0.98)
            continue
        lo, hi = span[prev]
        sibs = children[prev]
        if len(sibs) == 1:
            span[step] = (lo, hi)
        else:
            k, w = sibs.index(step), (0.96 / len(sibs))
            span[step] = (0.02 + k * w, 0.02 + (k + 1) * w)
    box = {s_: span[s_] for s_ in rows}
    if left_out and "all_patients" in rows:
        box["all_patients"] = (0.02, 0.64)
    return rows, left_out, depth, levels, box


def flow_box_lines(step: str, r) -> tuple[str, str]:
    """The two lines under a box's title: its n and its shares (or why it is withheld)."""
    is_last = step == "candidates"
    n = r["n"]
    if n != n:  # NaN: withheld by the disclosure rule
        return "n withheld", (
            "withheld with the target subgroup"
            if is_last
            else f"by disclosure control ({r.get('disclosure', 'the rule')})"
        )
    nval = f"n = {n:,.1f}" if is_last else f"n = {int(n):,}"
    if step == "database":
        return nval, "before the population definition"
    if step == "all_patients":
        return nval, (
            _share(r["pct_of_previous"], "the database") if r["previous_step"] else "the population"
        )
    if r["previous_step"] == "all_patients":
        return nval, _share(r["pct_of_all"], "all patients")
    prev_title = FLOW_TITLES.get(r["previous_step"], r["previous_step"]).lower()
    return f"{nval}: {_share(r['pct_of_previous'], prev_title)}", _share(
        r["pct_of_all"], "all patients"
    )


def _draw_left_out(ax, left_out, y) -> None:
    """The box of who was left out of the population, beside it, with its arrow."""
    import textwrap

    import matplotlib.patches as mpatches

    ax.add_patch(
        mpatches.FancyBboxPatch(
            (0.67, y - 0.42),
            0.30,
            0.84,
            boxstyle="round,pad=0.01,rounding_size=0.02",
            fc="#f7f7f7",
            ec="#888888",
            lw=1.0,
        )
    )
    ax.text(0.82, y + 0.28, "Left out", ha="center", va="center", fontsize=8, weight="bold")
    items = []
    for r in left_out:
        n = r["n"]
        what = str(r["definition"]).removeprefix("left out: ")
        val = "withheld" if n != n else f"{int(n):,}"
        items.append("\n".join(textwrap.wrap(f"{what}: {val}", 46)))
    ax.text(  # one block under the heading: items never overlap
        0.82,
        y + 0.16,
        "\n".join(items),
        ha="center",
        va="top",
        fontsize=6.2 if sum(i.count("\n") + 1 for i in items) <= 4 else 5.6,
        color="#444444",
        linespacing=1.15,
    )
    ax.annotate(
        "",
        xy=(0.82, y + 0.43),
        xytext=(0.5, y + 0.57),
        arrowprops={"arrowstyle": "-|>", "color": "#888888", "lw": 0.9},
    )


def _draw_box(ax, step, r, y, lo, hi) -> None:
    """One step's box: its title, n and shares, and its definition below them."""
    import textwrap

    import matplotlib.patches as mpatches

    x0, x1 = lo + 0.01, hi - 0.01
    xc = (x0 + x1) / 2
    narrow = (x1 - x0) < 0.6
    is_last = step == "candidates"
    ax.add_patch(
        mpatches.FancyBboxPatch(
            (x0, y - 0.42),
            x1 - x0,
            0.84,
            boxstyle="round,pad=0.01,rounding_size=0.02",
            fc="#e6f5ef" if is_last else "#e8f1fa",
            ec=style.ACCENT if is_last else style.OKABE_ITO["blue"],
            lw=1.2,
        )
    )
    line2, line3 = flow_box_lines(step, r)
    ax.text(
        xc,
        y + 0.28,
        FLOW_TITLES.get(step, step),
        ha="center",
        va="center",
        fontsize=8.5 if not narrow else 8,
        weight="bold",
    )
    ax.text(xc, y + 0.1, line2, ha="center", va="center", fontsize=7.8)
    ax.text(xc, y - 0.07, line3, ha="center", va="center", fontsize=7.8)
    # the definition below the numbers, within the box: two lines, smaller where needed
    width_chars, size = int((x1 - x0) * 105), 6.6
    lines = textwrap.wrap(str(r["definition"]), width_chars)
    while len(lines) > 2 and size > 5.2:
        size -= 0.4
        width_chars = int(width_chars * 1.08)
        lines = textwrap.wrap(str(r["definition"]), width_chars)
    ax.text(
        xc,
        y - 0.17,
        "\n".join(lines),
        ha="center",
        va="top",
        fontsize=size,
        color="#444444",
        linespacing=1.1,
    )


def flow_diagram(attrition: pd.DataFrame, data_label: str):
    """The attrition as a tree of boxes (each step under the step it is drawn from), each
    with its definition, n and percentages, all taken from the attrition table (the layout:
    :func:`flow_layout`)."""
    require_released(attrition, "flow diagram")
    rows, left_out, depth, levels, box = flow_layout(attrition)
    fig, ax = _figure((style.FULL[0], 1.15 * levels + 0.3))
    fig.subplots_adjust(left=0.0, right=1.0)
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.5, levels - 0.45)
    if left_out and "all_patients" in rows:
        _draw_left_out(ax, left_out, levels - 1 - depth["all_patients"])
    for step, r in rows.items():
        y = levels - 1 - depth[step]
        lo, hi = box[step]
        _draw_box(ax, step, r, y, lo, hi)
        prev = r["previous_step"]
        if prev:
            plo, phi = box[prev]
            xc = ((lo + 0.01) + (hi - 0.01)) / 2  # the box's centre, as _draw_box has it
            ax.annotate(
                "",
                xy=(xc, y + 0.43),
                xytext=((plo + phi) / 2, y + 0.57),
                arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 0.9},
            )
    ax.set_title("From all patients to candidates for a local treatment")
    style.add_caption(
        fig,
        style.caption(
            "Each box: patients meeting the definition, with its share of the box it is drawn from "
            "and of all patients. Both boxes below the pain cohort are drawn from it: the target "
            "subgroup needs a risk condition or a risk drug, so it is not a part of the box beside "
            "it. The last box is an expectation (target x benefit fraction).",
            data_label,
        ),
    )
    return fig


def eligibility_histogram(dist: pd.DataFrame, estimate, data_label: str):
    """The distribution of the expected candidates per GP list under the model, with the
    point, its interval and the prediction interval for one list."""
    require_released(dist, "eligibility histogram")
    fig, ax = _figure()
    width = dist["per_gp_list_to"] - dist["per_gp_list_from"]
    ax.bar(
        dist["per_gp_list_from"],
        dist["probability"],
        width=width,
        align="edge",
        color=style.OKABE_ITO["sky_blue"],
        edgecolor="white",
        lw=0.3,
    )
    for v, ls in (
        (estimate.per_gp_list_low, ":"),
        (estimate.per_gp_list, "-"),
        (estimate.per_gp_list_high, ":"),
    ):
        ax.axvline(v, color="black", ls=ls, lw=1)
    ax.text(
        0.99,
        0.97,
        f"{estimate.bound}{estimate.per_gp_list:.1f} per list of {estimate.gp_list_size}\n"
        f"{estimate.level:.0%} interval "
        f"{estimate.per_gp_list_low:.1f}-{estimate.per_gp_list_high:.1f}\n"
        f"one list: {estimate.in_one_list_low}-{estimate.in_one_list_high} ({estimate.level:.0%} "
        f"prediction)",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=8,
        bbox={"fc": "white", "ec": "#cccccc", "lw": 0.5},
    )
    ax.set_xlabel(f"expected candidates per GP list of {estimate.gp_list_size} patients")
    ax.set_ylabel("probability")
    ax.set_title("Uncertainty of the eligibility estimate")
    style.add_caption(
        fig,
        style.caption(
            f"Model: {estimate.model}. Solid line: point estimate; dotted: its interval. The "
            f"count in one "
            "actual list varies more (prediction interval in the box).",
            data_label,
        ),
    )
    return fig


def tornado(table: pd.DataFrame, data_label: str):
    """One-at-a-time swings of the estimate per GP list, largest first."""
    require_released(table, "tornado")
    if (
        nothing := _nothing(table, ["low_estimate", "high_estimate"], "the tornado plot")
    ) is not None:
        return nothing
    if "base_estimate" in table.columns and table["base_estimate"].isna().all():
        return NotDrawn(
            "the tornado plot",
            "the base estimate it measures every swing from is withheld by disclosure control",
        )
    t = table.iloc[::-1].reset_index(drop=True)
    fig, ax = _figure((style.FULL[0], 0.9 + 0.5 * len(t)))
    base = float(t["base_estimate"].iloc[0])
    y = np.arange(len(t))
    ax.barh(
        y,
        t["low_estimate"] - base,
        left=base,
        color=style.OKABE_ITO["blue"],
        height=0.6,
        label="value giving the lowest estimate",
    )
    ax.barh(
        y,
        t["high_estimate"] - base,
        left=base,
        color=style.OKABE_ITO["orange"],
        height=0.6,
        label="value giving the highest estimate",
    )
    if base == base:
        ax.axvline(base, color="black", lw=0.8)

    def ylabel(r):
        w = r.get("withheld_values", "")
        w = "" if w != w or not w else f"\n({str(w).replace('_', ' ')}: withheld)"
        return str(r["parameter"]).replace("_", " ") + w

    ax.set_yticks(y, [ylabel(r) for _, r in t.iterrows()], fontsize=8)
    if base != base:  # the base cell itself is withheld: nothing to draw around
        ax.text(
            0.5,
            0.5,
            "The base estimate is withheld by disclosure control\n(its target subgroup is "
            "below the threshold, or within it of a group\nthat contains it): no ranges "
            "can be shown.",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=9,
            color="#555555",
        )
    _tornado_labels(ax, t, y, base)
    lo = np.nanmin([t["low_estimate"].min(), base, 0]) if t["low_estimate"].notna().any() else 0.0
    hi = np.nanmax([t["high_estimate"].max(), base, 1]) if t["high_estimate"].notna().any() else 1.0
    pad = (hi - lo) * 0.35 + 1
    ax.set_xlim(max(0.0, lo - pad), hi + pad)
    ax.set_ylim(-1.4, len(t) - 0.5)
    ax.set_xlabel("expected candidates per GP list")
    ax.set_title(
        "Which assumption moves the estimate most"
        + (f" (base {base:.1f} per list)" if base == base else " (base withheld)")
    )
    ax.legend(loc="lower right", ncol=2)
    style.add_caption(
        fig,
        style.caption(
            "Each bar: the estimate when one parameter takes the values of its grid range, every "
            "other at the paper's definition.",
            data_label,
        ),
    )
    return fig


def _tornado_labels(ax, t: pd.DataFrame, y, base: float) -> None:
    """Each bar's ends labelled with the parameter's value and the estimate there (or that
    every value is withheld)."""
    for yi, (_, r) in zip(y, t.iterrows(), strict=True):
        if r["low_estimate"] != r["low_estimate"]:
            ax.annotate(
                "every value withheld",
                (base if base == base else 0, yi),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
                color="#777777",
            )
            continue
        ax.annotate(
            f"{str(r['low_value']).replace('_', ' ')}: {r['low_estimate']:.1f}",
            (min(r["low_estimate"], base), yi),
            xytext=(-4, 0),
            textcoords="offset points",
            ha="right",
            va="center",
            fontsize=7,
        )
        ax.annotate(
            f"{str(r['high_value']).replace('_', ' ')}: {r['high_estimate']:.1f}",
            (max(r["high_estimate"], base), yi),
            xytext=(4, 0),
            textcoords="offset points",
            ha="left",
            va="center",
            fontsize=7,
        )


def heatmap(pivot: pd.DataFrame, data_label: str, xlabel: str, ylabel: str, title: str):
    """Heatmap of the estimate per GP list (rows x columns of ``pivot``) with values."""
    require_released(pivot, "heatmap")
    if (nothing := _nothing(pivot, list(pivot.columns), f"the heatmap {title!r}")) is not None:
        return nothing
    fig, ax = _figure((style.FULL[0], 3.6))
    im = ax.imshow(pivot.to_numpy(dtype=float), cmap="viridis", aspect="auto")
    ax.set_xticks(range(pivot.shape[1]), [str(c) for c in pivot.columns])
    ax.set_yticks(range(pivot.shape[0]), [str(i) for i in pivot.index])
    vals = pivot.to_numpy(dtype=float)
    vmax = np.nanmax(vals) if np.isfinite(vals).any() else 1.0
    for i in range(pivot.shape[0]):
        for j in range(pivot.shape[1]):
            v = pivot.iat[i, j]
            ax.text(
                j,
                i,
                "withheld" if v != v else f"{v:.1f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if v == v and v < 0.6 * vmax else "black",
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    cb = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    cb.set_label("candidates per GP list")
    style.add_caption(
        fig,
        style.caption(
            "Expected candidates per GP list for each combination, the other definitions at the "
            "paper's values.",
            data_label,
        ),
    )
    return fig


# ----------------------------------------------------------------------------- practices
def _pooled_row(pooled: pd.DataFrame):
    require_released(pooled, "the pooled estimate")
    return pooled.iloc[0] if len(pooled) else None


def funnel(table: pd.DataFrame, pooled: pd.DataFrame, data_label: str, left_out: int = 0):
    """Target share of the population (%) against practice size, with 95% and 99.8%
    binomial control limits around the network's proportion (Spiegelhalter 2005); practices
    outside the 99.8% limits are labelled."""

    require_released(table, "the funnel plot")
    if (nothing := _nothing(table, ["target_pct"], "the funnel plot")) is not None:
        return nothing
    _pooled_row(pooled)
    fig, ax = _figure()
    if len(table) == 0:
        ax.text(0.5, 0.5, "no practice released", ha="center", transform=ax.transAxes)
        return fig
    p0 = float(table["target_n"].sum() / table["population_n"].sum())
    lo_n = max(10, int(table["population_n"].min() * 0.5))
    hi_n = int(table["population_n"].max() * 1.3)
    sizes = np.unique(np.geomspace(lo_n, hi_n, 120).astype(int))
    lim = funnel_limits(p0, sizes)
    for tag, style_, name in (("95", "--", "95% limits"), ("99_8", "-", "99.8% limits")):
        ax.plot(lim["n"], lim[f"low_{tag}"], style_, color="#777777", lw=0.9, label=name)
        ax.plot(lim["n"], lim[f"high_{tag}"], style_, color="#777777", lw=0.9)
    ax.axhline(100 * p0, color="black", lw=0.8, label=f"network {100 * p0:.2f}%")
    out = outside_limits(table, p0).to_numpy()
    ax.plot(
        table["population_n"][~out],
        table["target_pct"][~out],
        "o",
        color=style.OKABE_ITO["blue"],
        ms=5,
        label="practice",
    )
    ax.plot(
        table["population_n"][out],
        table["target_pct"][out],
        "o",
        color=style.OKABE_ITO["vermillion"],
        ms=6,
        label="outside the 99.8% limits",
    )
    for _, r in table[out].iterrows():
        ax.annotate(
            str(r["practice_id"]),
            (r["population_n"], r["target_pct"]),
            xytext=(4, 3),
            textcoords="offset points",
            fontsize=7,
        )
    ax.set_xlabel("practice size (patients in the population)")
    ax.set_ylabel("target subgroup, % of the population")
    ax.set_title("Funnel plot of the target subgroup by practice")
    ax.set_ylim(bottom=0)
    # the legend beside the axes: inside, it sits on the limit curves
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.subplots_adjust(right=0.72)
    note = (
        f"{int(out.sum())} of {len(table)} practices outside the 99.8% limits (expected by "
        f"chance: {0.002 * len(table):.2f}); limits: exact binomial around the network's share."
    )
    if left_out:
        note += f" {left_out} practice(s) left out by disclosure control."
    if len(table) < 3:
        note = (
            f"Only {len(table)} practice(s): a funnel plot compares practices and says little "
            "here. " + note
        )
    style.add_caption(fig, style.caption(note, data_label))
    return fig


def practice_forest(table: pd.DataFrame, pooled: pd.DataFrame, data_label: str):
    """Each practice's target share (%) with its interval, the pooled estimate (diamond) and
    the 95% prediction interval for a new practice."""
    require_released(table, "the forest plot")
    if (nothing := _nothing(table, ["target_pct"], "the forest plot of practices")) is not None:
        return nothing
    row = _pooled_row(pooled)
    t = table.sort_values("target_pct").reset_index(drop=True)
    fig, ax = _figure((style.FULL[0], 1.4 + 0.22 * len(t)))
    y = np.arange(len(t)) + 2
    pct = t["target_pct"].to_numpy(float)
    ax.errorbar(
        pct,
        y,
        xerr=[pct - t["ci_low"].to_numpy(float), t["ci_high"].to_numpy(float) - pct],
        fmt="s",
        color=style.OKABE_ITO["blue"],
        ms=4,
        capsize=2,
        lw=1,
    )
    labels = [
        f"{p} (n = {int(n):,})" for p, n in zip(t["practice_id"], t["population_n"], strict=True)
    ]
    ticks, names = list(y), labels
    if row is not None and row["estimate"] == row["estimate"]:
        est, lo, hi = row["estimate"], row["ci_low"], row["ci_high"]
        ax.fill([lo, est, hi, est], [0.5, 0.8, 0.5, 0.2], color="black")
        if row["prediction_low"] == row["prediction_low"] and row["prediction_low"] is not None:
            ax.plot(
                [row["prediction_low"], row["prediction_high"]], [0.5, 0.5], color="black", lw=1
            )
            ax.annotate(
                f"prediction {row['prediction_low']:.1f}-{row['prediction_high']:.1f}%",
                (row["prediction_high"], 0.5),
                xytext=(5, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
        ax.axvline(est, color="#999999", lw=0.6, ls=":")
        ticks, names = [0.5, *ticks], [f"pooled {est:.2f}% ({lo:.2f}-{hi:.2f})", *labels]
    ax.set_yticks(ticks, names, fontsize=7)
    ax.set_xlabel("target subgroup, % of the population")
    ax.set_title("Practices and the pooled estimate")
    note = ""
    if row is not None:
        note = f"Pool: {row['method']}; {heterogeneity(row['tau2'], row['i2'], row['practices'])}."
        if row.get("practices_left_out"):
            note += f" {int(row['practices_left_out'])} practice(s) left out by disclosure control."
    style.add_caption(fig, style.caption(note, data_label))
    return fig


def per_list_across_practices(table: pd.DataFrame, data_label: str, list_size: int):
    """Expected candidates per GP list in each practice: the paper's single figure as an
    observed range."""
    require_released(table, "the per-list distribution")
    if (nothing := _nothing(table, ["per_gp_list"], "the per-list distribution")) is not None:
        return nothing
    fig, ax = _figure()
    v = table["per_gp_list"].dropna()
    if len(v) == 0:
        ax.text(0.5, 0.5, "no practice released", ha="center", transform=ax.transAxes)
        return fig
    ax.hist(
        v, bins=min(30, max(5, len(v) // 2)), color=style.OKABE_ITO["sky_blue"], edgecolor="white"
    )
    for q, ls in ((0.5, "-"), (0.1, ":"), (0.9, ":")):
        ax.axvline(np.quantile(v, q), color="black", lw=0.8, ls=ls)
    ax.set_xlabel(f"expected candidates per GP list of {list_size:,}")
    ax.set_ylabel("practices")
    ax.set_title("Candidates per GP list across practices")
    style.add_caption(
        fig,
        style.caption(
            f"{len(v)} practices; median {np.median(v):.1f}, 10th-90th percentile "
            f"{np.quantile(v, 0.1):.1f}-{np.quantile(v, 0.9):.1f} (lines).",
            data_label,
        ),
    )
    return fig
