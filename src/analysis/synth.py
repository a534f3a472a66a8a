"""The synthetic default practice database (seeded, deterministic, calibrated).

The real GP database of Mammucari et al. (2016) is private. This generator writes a
database in the contract that reproduces every published cohort figure (P1-P9) with the
paper's definitions, from the calibration file ``data/synthetic_calibration.yaml``. It is
built so that the definitions matter: mild episodes, other sites and causes, episodes
before the window, codes outside the lists, near-miss ages and single episodes.

Patients are generated in blocks (one practice, or a slice of one); every block is
calibrated on its own, so for any size the published figures hold as proportions, and
memory stays bounded while the files are streamed to Parquet.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis import paths
from analysis.contract import TABLES, arrow_schema
from analysis.errors import AnalysisError
from analysis.files import atomic_write_text
from analysis.folders import publish_folder
from analysis.inputs import read_yaml
from analysis.params import Params

MIN_BLOCK = 200
DEFAULT_SEED = 20160601
DEFAULT_CHUNK = 400_000

# Codes recorded in the synthetic data, by group: the first ones with dots, some without,
# as real extracts mix both. Each starts with an entry of the group's code list.
RISK_CONDITION_CODES = {
    "cardiovascular_disease": ["414.01", "410.9", "413.9", "434.91", "435.9", "4140", "440.20"],
    "heart_failure": ["428.0", "428.22", "4280", "402.11"],
    "hypertension": ["401.9", "401.1", "4019", "402.10", "403.90"],
    "renal_impairment": ["585.3", "585.4", "586", "5853"],
    "diabetes_mellitus": ["250.00", "250.02", "25000", "250.40"],
    "gastrointestinal_disorders": ["531.90", "532.90", "535.00", "578.9", "5319"],
    "copd_asthma": ["496", "493.90", "491.21", "492.8", "49390"],
}
# diagnoses outside every risk list, some close to them ("near misses")
OTHER_DIAGNOSIS_CODES = [
    "715.16",
    "715.36",
    "721.3",
    "724.2",
    "719.46",
    "272.4",
    "278.00",
    "244.9",
    "300.00",
    "311",
    "477.9",
    "530.81",
    "429.2",
    "786.05",
    "790.29",
    "593.9",
    "427.31",
    "V58.61",
]
RISK_DRUG_CODES = {
    "antithrombotics": ["B01AC06", "B01AA03", "B01AF01", "B01AB05", "B01AC04"],
    "corticosteroids": ["H02AB06", "H02AB04", "H02AB07"],
    "ssri": ["N06AB04", "N06AB06", "N06AB10"],
}
OTHER_DRUG_CODES = [
    "A02BC01",
    "A02BC02",
    "C10AA05",
    "C09AA05",
    "C07AB07",
    "A10BA02",
    "M01AB05",
    "M01AE01",
    "M01AH01",
    "N02BE01",
    "D07AC01",
    "R03AK06",
    "C03CA01",
    "N02AX02",
]
OTHER_SITES = ["shoulder", "other"]
OTHER_CAUSES = ["traumatic", "neuropathic", "other"]


@dataclass(frozen=True)
class Calibration:
    raw: dict
    sha256: str

    @property
    def pub(self) -> dict:
        return self.raw["published"]

    @property
    def assume(self) -> dict:
        return self.raw["assumptions"]

    @property
    def index_date(self) -> dt.date:
        return dt.date.fromisoformat(self.raw["index_date"])

    @property
    def window_start(self) -> dt.date:
        return dt.date.fromisoformat(self.raw["window_start"])


def load_calibration(path: Path | None = None) -> Calibration:
    path = Path(path or paths.CALIBRATION)
    raw = read_yaml(path, "Calibration file")
    if not isinstance(raw, dict):
        raise AnalysisError(f"Calibration file {path} must hold a mapping of name: value.")
    return Calibration(raw, hashlib.sha256(path.read_bytes()).hexdigest())


def _round(x: float) -> int:
    """Round half up (deterministic, unlike banker's rounding)."""
    return int(math.floor(x + 0.5))


# ----------------------------------------------------------------------------- ages
STEPS = 200
"""Most moves of the age calibration (each one year for one or more patients)."""


def _fit_sum_and_squares(ages, adjustable, target_sum, target_sq, tol_sq, rng, lo, hi):
    """Move integer ages by one year at a time until their sum is exactly ``target_sum``
    and their sum of squares is within ``tol_sq`` of ``target_sq``.

    Only positions in ``adjustable`` move, and only within [lo, hi].
    """
    adj = np.asarray(adjustable)
    for _ in range(STEPS):
        d = int(target_sum - ages.sum())
        if d:
            ok = adj[(ages[adj] + np.sign(d) >= lo) & (ages[adj] + np.sign(d) <= hi)]
            pick = rng.choice(ok, size=min(abs(d), len(ok)), replace=False)
            ages[pick] += np.sign(d)
            continue
        q = float(np.dot(ages.astype(np.float64), ages))
        D = target_sq - q
        if abs(D) <= tol_sq:
            return ages
        mean = ages.mean()
        a = ages[adj]
        upper = adj[(a >= mean) & (a + 1 <= hi) & (a - 1 >= lo)]
        lower = adj[(a < mean) & (a - 1 >= lo) & (a + 1 <= hi)]
        k = 0  # no coarse step when one side has no movable age (a practice of extremes)
        if len(upper) and len(lower):
            gain = 2.0 * (ages[upper].mean() - ages[lower].mean()) + 2.0 * np.sign(D)
            k = int(abs(D) / max(abs(gain), 1.0) * 0.8)
        if k >= 1:
            k = min(k, len(upper), len(lower))
            i = rng.choice(upper, size=k, replace=False)
            j = rng.choice(lower, size=k, replace=False)
            s = 1 if D > 0 else -1
            ages[i] += s
            ages[j] -= s
            continue
        # fine step: one pair whose age difference gives the change closest to D
        s = 1 if D > 0 else -1
        best = None
        for ii in rng.permutation(adj)[:400]:
            for jj in rng.permutation(adj)[:50]:
                if ii == jj:
                    continue
                diff = ages[ii] - ages[jj]
                if s > 0 and ages[ii] + 1 <= hi and ages[jj] - 1 >= lo:
                    delta = 2 * diff + 2
                elif s < 0 and ages[ii] - 1 >= lo and ages[jj] + 1 <= hi:
                    delta = -2 * diff + 2
                else:
                    continue
                err = abs(D - delta)
                if best is None or err < best[0]:
                    best = (err, ii, jj)
            if best and best[0] <= tol_sq:
                break
        if best is None:
            break
        _, ii, jj = best
        ages[ii] += s
        ages[jj] -= s
    q = float(np.dot(ages.astype(np.float64), ages))
    what = (
        f"the sum of ages is {int(ages.sum())} against {int(target_sum)}"
        if int(ages.sum()) != int(target_sum)
        else f"the sum of squared ages is {q:.0f} against {target_sq:.0f} (within {tol_sq:.0f})"
    )
    raise AnalysisError(
        f"The synthetic generator could not give {len(adj)} patients aged {lo}-{hi} the "
        f"calibrated mean and SD of age: after {STEPS} steps {what}. Try more patients per "
        "practice (a larger --patients or fewer --practices)."
    )


def _truncated_normal_ints(rng, n, mean, sd, lo, hi):
    x = rng.normal(mean, sd, size=n)
    bad = (x < lo - 0.5) | (x > hi + 0.5)
    while bad.any():
        x[bad] = rng.normal(mean, sd, size=int(bad.sum()))
        bad = (x < lo - 0.5) | (x > hi + 0.5)
    return np.clip(np.rint(x), lo, hi).astype(np.int64)


# ----------------------------------------------------------------------------- a block
# ----------------------------------------------------------------------------- one block
# A block is generated in named steps, in this order (each draws from the block's random
# generator in turn, so the order is part of the output): roles, ages, sex, risk
# conditions, risk drugs, birth dates, pain episodes, diagnoses, prescriptions, patients.
T, E2S, E2R, NPAIN, NONPAIN = 0, 1, 2, 3, 4  # roles: target, elderly pain outside it (single
# episode / recurrent without risk), other pain patients, patients without pain


@dataclass
class _Block:
    """The state of one block while it is generated (numpy arrays by patient index)."""

    n: int
    rng: np.random.Generator
    cal: Calibration
    shift: float
    sd_within: float
    elderly: int
    counts: dict
    role: np.ndarray | None = None
    ages: np.ndarray | None = None
    male: np.ndarray | None = None
    has_cond: np.ndarray | None = None
    cond_groups: tuple = ()  # (patient index, group index) per risk-condition group held
    has_drug: np.ndarray | None = None
    drug_groups: np.ndarray | None = None
    birth: np.ndarray | None = None

    def idx(self, role: int) -> np.ndarray:
        return np.flatnonzero(self.role == role)

    @property
    def pain(self) -> np.ndarray:
        return self.role <= NPAIN

    @property
    def index_day(self):
        return np.datetime64(self.cal.index_date, "D")

    @property
    def window_start(self):
        return np.datetime64(self.cal.window_start, "D")

    def dates_between(self, start, end):
        """A uniform day between ``start`` and ``end`` (both included), per element."""
        span = (end - start).astype(np.int64) + 1
        return start + (self.rng.random(len(span)) * span).astype(np.int64)


def _shifted(share: float, effect: float) -> float:
    """``share`` moved by ``effect`` on the logit scale."""
    if not effect:
        return share
    z = math.log(share / (1 - share)) + effect
    return 1 / (1 + math.exp(-z))


def _role_counts(n: int, cal: Calibration, effects: tuple[float, float] = (0.0, 0.0)) -> dict:
    """The exact numbers of the block: the published counts scaled to ``n`` patients; a
    practice of a network moves its pain prevalence and its target share of the pain cohort
    by ``effects`` (logit scale)."""
    pub, asm = cal.pub, cal.assume
    P = pub["population"]
    pain_share = _shifted(pub["pain"] / P, effects[0])
    target_share = _shifted(pub["target"] / pub["pain"], effects[1])
    c = {"female": _round(n * pub["female"] / P), "pain": _round(n * pain_share)}
    c["pain_male"] = _round(c["pain"] * pub["pain_male"] / pub["pain"])
    c["pain_risk"] = _round(c["pain"] * pub["pain_risk_condition"] / pub["pain"])
    c["target"] = _round(c["pain"] * target_share)
    c["target_drug_only"] = _round(c["target"] * asm["target_drug_only_share"])
    e2 = max(2, _round(c["pain"] * asm["pain_elderly_not_target_share"]))
    c["e2_single"], c["e2_recurrent"] = (e2 + 1) // 2, e2 - (e2 + 1) // 2
    c["pain_other"] = c["pain"] - c["target"] - e2
    c["no_pain"] = n - c["pain"]
    return c


def _assign_roles(b: _Block) -> None:
    c = b.counts
    b.role = np.empty(b.n, dtype=np.int8)
    sizes = [c["target"], c["e2_single"], c["e2_recurrent"], c["pain_other"], c["no_pain"]]
    bounds = np.cumsum([0, *sizes])
    for r in range(5):
        b.role[bounds[r] : bounds[r + 1]] = r


def _draw_ages(b: _Block) -> None:
    """Ages in completed years, moved until the block's sum and sum of squares give the
    published mean and SD exactly (and the pain cohort its published mean)."""
    pub, rng, n, c = b.cal.pub, b.rng, b.n, b.counts
    ages = np.zeros(n, dtype=np.int64)
    pain = b.pain
    old = (b.role == T) | (b.role == E2S) | (b.role == E2R)
    ages[old] = np.minimum(b.elderly + rng.geometric(1 / 6.5, size=int(old.sum())) - 1, 96)
    idx_n = b.idx(NPAIN)
    pain_sum = _round((pub["pain_age_mean"] + b.shift) * c["pain"])
    need_n = (pain_sum - ages[old].sum()) / max(c["pain_other"], 1)
    ages[idx_n] = _truncated_normal_ints(
        rng, c["pain_other"], need_n + 1.0, 13.0, 16, b.elderly - 1
    )
    adj_n = idx_n[(ages[idx_n] >= 20) & (ages[idx_n] <= 70)]
    d = pain_sum - ages[pain].sum()
    pick = rng.choice(adj_n, size=min(abs(int(d)), len(adj_n)), replace=False)
    ages[pick] += int(np.sign(d))
    # a few near misses: pain patients aged exactly 74 (one year short of elderly)
    S = _round((pub["age_mean"] + b.shift) * n)
    Q = b.sd_within**2 * (n - 1) + S * S / n
    idx_np = b.idx(NONPAIN)
    n_np = c["no_pain"]
    S_np = S - ages[pain].sum()
    Q_np = Q - float(np.dot(ages[pain].astype(float), ages[pain]))
    m_np = S_np / n_np
    v_np = Q_np / n_np - m_np**2
    if v_np <= 1.0:
        raise AnalysisError(
            "Calibration infeasible: the age targets leave no spread for "
            "patients outside the pain cohort."
        )
    z = rng.standard_normal(n_np)
    z = (z - z.mean()) / z.std()
    ages[idx_np] = np.clip(
        np.rint(m_np + math.sqrt(max(v_np - 1 / 12, 0.5)) * z),
        pub["age_min"] + 2,
        pub["age_max"] - 2,
    ).astype(np.int64)
    order = np.argsort(ages[idx_np], kind="stable")
    ages[idx_np[order[0]]] = pub["age_min"]
    ages[idx_np[order[-1]]] = pub["age_max"]
    a_np = ages[idx_np]
    adj_np = idx_np[(a_np >= 20) & (a_np <= 72)]
    tol = 0.15 * 2 * b.sd_within * 0.01 * (n - 1)
    _fit_sum_and_squares(ages, adj_np, S, Q, tol, rng, 19, 73)
    b.ages = ages


def _draw_sex(b: _Block) -> None:
    c, rng = b.counts, b.rng
    b.male = np.zeros(b.n, dtype=bool)
    b.male[rng.choice(np.flatnonzero(b.pain), size=c["pain_male"], replace=False)] = True
    n_m_np = (b.n - c["female"]) - c["pain_male"]
    if n_m_np < 0 or n_m_np > c["no_pain"]:
        raise AnalysisError("Calibration infeasible: the sex targets do not fit together.")
    b.male[rng.choice(b.idx(NONPAIN), size=n_m_np, replace=False)] = True


def _draw_risk_conditions(b: _Block) -> None:
    """Who has any risk condition (exact in the pain cohort; by age outside it), then which
    groups (weighted, more of them from 65)."""
    c, rng, asm, ages = b.counts, b.rng, b.cal.assume, b.ages
    has_cond = np.zeros(b.n, dtype=bool)
    t_idx = b.idx(T)
    has_cond[t_idx[c["target_drug_only"] :]] = True
    e2s_idx = b.idx(E2S)
    has_cond[e2s_idx[: _round(0.6 * len(e2s_idx))]] = True
    rest = c["pain_risk"] - int(has_cond[b.pain].sum())
    if rest < 0 or rest > c["pain_other"]:
        raise AnalysisError("Calibration infeasible: pain cohort risk-condition count.")
    idx_n, idx_np = b.idx(NPAIN), b.idx(NONPAIN)
    w = np.exp((ages[idx_n] - 50) / 15.0)
    has_cond[rng.choice(idx_n, size=rest, replace=False, p=w / w.sum())] = True
    p_np = 1 / (
        1 + np.exp(-(ages[idx_np] - asm["risk_condition_age50"]) / asm["risk_condition_age_scale"])
    )
    has_cond[idx_np] = rng.random(c["no_pain"]) < p_np
    groups = list(asm["risk_condition_weights"])
    gw = np.array([asm["risk_condition_weights"][g] for g in groups], dtype=float)
    cond_idx = np.flatnonzero(has_cond)
    lo_p, hi_p = asm["extra_group_probability"]
    k = 1 + rng.binomial(3, np.where(ages[cond_idx] >= 65, hi_p, lo_p))
    keys = np.log(gw)[None, :] + rng.gumbel(size=(len(cond_idx), len(groups)))
    rank = np.argsort(-keys, axis=1)
    sel = np.arange(len(groups))[None, :] < k[:, None]
    b.has_cond = has_cond
    b.cond_groups = (np.repeat(cond_idx, k), rank[sel])  # row-major: the first k of each row


def _draw_risk_drugs(b: _Block) -> None:
    """Who takes a risk drug (more from 65; every drug-only target patient; no recurrent
    elderly patient outside the target), and which group."""
    rng, asm = b.rng, b.cal.assume
    lo_d, hi_d = asm["risk_drug_probability"]
    has_drug = rng.random(b.n) < np.where(b.ages >= 65, hi_d, lo_d)
    has_drug[b.idx(T)[: b.counts["target_drug_only"]]] = True
    e2r_idx = b.idx(E2R)
    has_drug[e2r_idx] = False
    b.has_cond[e2r_idx] = False  # (already False; stated for the reader)
    dgroups = list(asm["risk_drug_weights"])
    dw = np.array([asm["risk_drug_weights"][g] for g in dgroups], dtype=float)
    b.has_drug = has_drug
    b.drug_groups = rng.choice(len(dgroups), size=int(has_drug.sum()), p=dw / dw.sum())


def _sample_codes(rng, group_of_record, groups, pools: dict) -> np.ndarray:
    """A code for every record from its group's pool (uniformly), group by group: the one
    code-sampling helper of diagnoses and prescriptions."""
    codes = np.empty(len(group_of_record), dtype=object)
    for gi, g in enumerate(groups):
        m = group_of_record == gi
        pool = np.array(pools[g], dtype=object)
        codes[m] = pool[rng.integers(0, len(pool), size=int(m.sum()))]
    return codes


def _pain_episodes(b: _Block) -> dict:
    """Qualifying episodes by role (recurrence as the roles need) and non-qualifying ones
    (mild, other site, other cause, before the window)."""
    rng, asm, n, c = b.rng, b.cal.assume, b.n, b.counts
    wstart, index = b.window_start, b.index_day
    site_names = list(asm["pain_site_weights"])
    sw = np.array([asm["pain_site_weights"][s] for s in site_names])
    sev_w = np.array(asm["severity_weights"], dtype=float)
    q = np.zeros(n, dtype=np.int64)
    q[b.role == T] = 2 + rng.binomial(2, 0.35, size=c["target"])
    q[b.role == E2S] = 1
    q[b.role == E2R] = 2 + rng.binomial(1, 0.3, size=c["e2_recurrent"])
    single = rng.random(c["pain_other"]) < asm["pain_single_episode_share"]
    q[b.idx(NPAIN)] = np.where(single, 1, 2 + rng.binomial(2, 0.3, size=c["pain_other"]))
    ep_pat = np.repeat(np.arange(n), q)
    ep_site = np.array(site_names, dtype=object)[
        rng.choice(len(site_names), size=len(ep_pat), p=sw / sw.sum())
    ]
    ep_sev = 4 + rng.choice(7, size=len(ep_pat), p=sev_w / sev_w.sum())
    ep_cause = np.full(len(ep_pat), "osteoarticular", dtype=object)
    ep_start = np.maximum(wstart, b.birth[ep_pat])
    ep_date = b.dates_between(ep_start, np.full(len(ep_pat), index))

    n_noise = rng.poisson(asm["noise_episodes_per_patient"], size=n)
    nz_pat = np.repeat(np.arange(n), n_noise)
    mix = asm["noise_episode_mix"]
    kinds = np.array(list(mix))
    kind = kinds[
        rng.choice(len(kinds), size=len(nz_pat), p=np.array(list(mix.values())) / sum(mix.values()))
    ]
    too_young = b.birth[nz_pat] > (wstart - np.timedelta64(3 * 366, "D"))
    kind[(kind == "before_window") & too_young] = "mild"
    nz_site = np.array(site_names, dtype=object)[
        rng.choice(len(site_names), size=len(nz_pat), p=sw / sw.sum())
    ]
    nz_sev = 4 + rng.choice(7, size=len(nz_pat), p=sev_w / sev_w.sum())
    nz_cause = np.full(len(nz_pat), "osteoarticular", dtype=object)
    m = kind == "mild"
    nz_sev[m] = rng.integers(0, 4, size=int(m.sum()))
    m = kind == "other_site"
    nz_site[m] = np.array(OTHER_SITES, dtype=object)[rng.integers(0, 2, size=int(m.sum()))]
    nz_sev[m] = rng.integers(0, 11, size=int(m.sum()))
    m = kind == "other_cause"
    nz_cause[m] = np.array(OTHER_CAUSES, dtype=object)[rng.integers(0, 3, size=int(m.sum()))]
    nz_start = np.maximum(wstart, b.birth[nz_pat])
    nz_end = np.full(len(nz_pat), index)
    bw = kind == "before_window"
    nz_start[bw] = wstart - np.timedelta64(3 * 365, "D")
    nz_end[bw] = wstart - np.timedelta64(1, "D")
    nz_date = b.dates_between(nz_start, nz_end)
    return {
        "pat": np.concatenate([ep_pat, nz_pat]),
        "date": np.concatenate([ep_date, nz_date]),
        "site": np.concatenate([ep_site, nz_site]),
        "severity": np.concatenate([ep_sev, nz_sev]).astype(np.int8),
        "cause": np.concatenate([ep_cause, nz_cause]),
    }


def _diagnoses(b: _Block) -> dict:
    """Risk conditions (1-2 records per group held) and other codes."""
    rng, asm, n = b.rng, b.cal.assume, b.n
    wstart, index = b.window_start, b.index_day
    pat_g, grp_g = b.cond_groups
    reps = 1 + rng.binomial(1, 0.4, size=len(pat_g))
    dx_pat_r = np.repeat(pat_g, reps)
    dx_code_r = _sample_codes(
        rng, np.repeat(grp_g, reps), list(asm["risk_condition_weights"]), RISK_CONDITION_CODES
    )
    hist_start = np.maximum(
        b.birth[dx_pat_r] + np.timedelta64(18 * 365, "D"), np.datetime64("1995-01-01")
    )
    hist_start = np.minimum(hist_start, index)
    hist_start = np.maximum(hist_start, b.birth[dx_pat_r])
    dx_date_r = b.dates_between(hist_start, np.full(len(dx_pat_r), index))
    n_other = rng.poisson(asm["other_diagnoses_per_patient"], size=n)
    dx_pat_o = np.repeat(np.arange(n), n_other)
    pool = np.array(OTHER_DIAGNOSIS_CODES, dtype=object)
    dx_code_o = pool[rng.integers(0, len(pool), size=len(dx_pat_o))]
    dx_date_o = b.dates_between(
        np.maximum(wstart, b.birth[dx_pat_o]), np.full(len(dx_pat_o), index)
    )
    return {
        "pat": np.concatenate([dx_pat_r, dx_pat_o]),
        "date": np.concatenate([dx_date_r, dx_date_o]),
        "code": np.concatenate([dx_code_r, dx_code_o]),
    }


def _prescriptions(b: _Block) -> dict:
    """Risk drugs (1-4 each) and other drugs."""
    rng, asm, n = b.rng, b.cal.assume, b.n
    drug_idx = np.flatnonzero(b.has_drug)
    reps = 1 + rng.binomial(3, 0.4, size=len(drug_idx))
    rx_pat_r = np.repeat(drug_idx, reps)
    rx_code_r = _sample_codes(
        rng, np.repeat(b.drug_groups, reps), list(asm["risk_drug_weights"]), RISK_DRUG_CODES
    )
    n_other = rng.poisson(asm["other_prescriptions_per_patient"], size=n)
    rx_pat_o = np.repeat(np.arange(n), n_other)
    pool = np.array(OTHER_DRUG_CODES, dtype=object)
    rx_code_o = pool[rng.integers(0, len(pool), size=len(rx_pat_o))]
    rx_pat = np.concatenate([rx_pat_r, rx_pat_o])
    return {
        "pat": rx_pat,
        "date": b.dates_between(
            np.maximum(b.window_start, b.birth[rx_pat]), np.full(len(rx_pat), b.index_day)
        ),
        "atc_code": np.concatenate([rx_code_r, rx_code_o]),
    }


def _patients(b: _Block, id_start: int, practice_id: str) -> tuple[dict, np.ndarray]:
    """The patients table in a shuffled order (ids run on from ``id_start``), with
    registration dates; returns it and the id of every patient index."""
    rng, n, index, wstart = b.rng, b.n, b.index_day, b.window_start
    perm = rng.permutation(n)
    pid_of = np.empty(n, dtype=np.int64)
    pid_of[perm] = id_start + np.arange(n, dtype=np.int64)
    reg_from = b.dates_between(
        np.full(n, np.datetime64("1985-01-01")), np.full(n, np.datetime64("2005-12-31"))
    )
    late = rng.random(n) < 0.12
    reg_from[late] = b.dates_between(
        np.full(int(late.sum()), wstart), np.full(int(late.sum()), index - np.timedelta64(365, "D"))
    )
    reg_from = np.maximum(reg_from, b.birth)
    left = rng.random(n) < 0.03
    reg_to = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    reg_to[left] = b.dates_between(
        np.full(int(left.sum()), index + np.timedelta64(1, "D")),
        np.full(int(left.sum()), index + np.timedelta64(180, "D")),
    )
    patients = {
        "patient_id": pid_of[perm],
        "practice_id": np.full(n, practice_id, dtype=object),
        "sex": np.where(b.male[perm], "M", "F").astype(object),
        "birth_date": b.birth[perm],
        "registered_from": reg_from[perm],
        "registered_to": reg_to[perm],
    }
    return patients, pid_of


def _block(
    n,
    rng,
    cal: Calibration,
    shift: float,
    sd_within: float,
    id_start: int,
    practice_id: str,
    effects: tuple[float, float] = (0.0, 0.0),
):
    """Generate one calibrated block of ``n`` patients and their events, step by step."""

    b = _Block(
        n=n,
        rng=rng,
        cal=cal,
        shift=shift,
        sd_within=sd_within,
        elderly=Params().elderly_age,
        counts=_role_counts(n, cal, effects),
    )
    _assign_roles(b)
    _draw_ages(b)
    _draw_sex(b)
    _draw_risk_conditions(b)
    _draw_risk_drugs(b)
    b.birth = _birth_dates(rng, b.ages, cal.index_date)
    pe, dx, rx = _pain_episodes(b), _diagnoses(b), _prescriptions(b)
    patients, pid_of = _patients(b, id_start, practice_id)
    return (
        patients,
        _events(pe, pid_of, ["site", "severity", "cause"]),
        _events(dx, pid_of, ["code"]),
        _events(rx, pid_of, ["atc_code"]),
    )


def _excluded_block(counts: dict, rng, cal: Calibration, id_start: int, practice_id: str):
    """Patients the default population definition leaves out (``population_exclusions`` of
    the calibration): deregistered before the window, registered after the index date,
    born after the index date. The first two have two qualifying pain episodes in the
    window, a risk condition and a risk drug, and are aged 60-94, so that counting them
    would change the pain cohort, the risk counts and the target subgroup."""
    index = np.datetime64(cal.raw["index_date"])
    wstart = np.datetime64(cal.raw["window_start"])
    kinds = np.repeat(
        [0, 1, 2],
        [counts["left_before_window"], counts["joined_after_index"], counts["born_after_index"]],
    )
    n = len(kinds)
    day = np.timedelta64(1, "D")

    def between(lo, hi, size):
        return lo + (rng.random(size) * ((hi - lo).astype(np.int64) + 1)).astype(np.int64)

    adult = kinds < 2
    birth = np.empty(n, dtype="datetime64[D]")
    birth[adult] = _birth_dates(
        rng, 60 + rng.integers(0, 35, size=int(adult.sum())), cal.index_date
    )
    birth[~adult] = between(index + day, index + 900 * day, int((~adult).sum()))
    reg_from = birth.copy()
    left, joined = kinds == 0, kinds == 1
    reg_from[left] = between(
        np.datetime64("1985-01-01"), np.datetime64("1999-12-31"), int(left.sum())
    )
    reg_from[joined] = between(index + day, index + 180 * day, int(joined.sum()))
    reg_from = np.maximum(reg_from, birth)
    reg_to = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    reg_to[left] = between(np.datetime64("2000-01-01"), wstart - day, int(left.sum()))
    # events: two qualifying episodes each (in the window, or after birth for the unborn),
    # a hypertension diagnosis and an antithrombotic
    pat = np.repeat(np.arange(n), 2)
    lo = np.where(adult[pat], wstart + 365 * day, birth[pat] + day)
    hi = np.where(adult[pat], index - 365 * day, birth[pat] + 1500 * day)
    pe = {
        "pat": pat,
        "date": between(lo, hi, len(pat)),
        "site": np.array(["knee", "back"] * n, dtype=object),
        "severity": np.full(len(pat), 6, dtype=np.int8),
        "cause": np.full(len(pat), "osteoarticular", dtype=object),
    }
    one = np.arange(n)
    when = np.where(adult, wstart, birth + 30 * day)
    dx = {
        "pat": one,
        "date": between(when, when + 300 * day, n),
        "code": np.full(n, "401.9", dtype=object),
    }
    rx = {
        "pat": one,
        "date": between(when, when + 300 * day, n),
        "atc_code": np.full(n, "B01AC06", dtype=object),
    }
    pid_of = id_start + np.arange(n, dtype=np.int64)
    patients = {
        "patient_id": pid_of,
        "practice_id": np.full(n, practice_id, dtype=object),
        "sex": np.where(rng.random(n) < 0.5, "M", "F").astype(object),
        "birth_date": birth,
        "registered_from": reg_from,
        "registered_to": reg_to,
    }
    return (
        patients,
        _events(pe, pid_of, ["site", "severity", "cause"]),
        _events(dx, pid_of, ["code"]),
        _events(rx, pid_of, ["atc_code"]),
    )


def exclusion_counts(cal: Calibration, population: int) -> dict:
    """The calibration's exclusions for a practice of ``population`` patients."""
    ex = cal.raw.get("population_exclusions", {})
    P = cal.pub["population"]
    return {
        k: _round(population * ex.get(k, 0) / P)
        for k in ("left_before_window", "joined_after_index", "born_after_index")
    }


def _events(ev, pid_of, cols):
    """Events of a block in (patient_id, date) order; ties keep their generated order."""
    pid = pid_of[ev["pat"]]
    days = ev["date"].astype("datetime64[D]").astype(np.int64)
    lo = int(days.min()) if len(days) else 0
    span = int(days.max()) - lo + 1 if len(days) else 1
    # one int64 key and a stable sort: the permutation of np.lexsort((date, pid)), faster
    order = np.argsort(pid * span + (days - lo), kind="stable")
    out = {"patient_id": pid[order], "date": ev["date"][order]}
    for c in cols:
        out[c] = ev[c][order]
    return out


def _birth_dates(rng, ages, index: dt.date):
    """Birth dates giving exactly ``ages`` completed years on ``index``."""
    out = np.empty(len(ages), dtype="datetime64[D]")
    for a in np.unique(ages):
        hi = _years_before(index, int(a))  # latest birth date with age a
        lo = _years_before(index, int(a) + 1) + dt.timedelta(days=1)
        m = ages == a
        span = (hi - lo).days + 1
        out[m] = np.datetime64(lo) + (rng.random(int(m.sum())) * span).astype(np.int64)
    return out


def _years_before(d: dt.date, years: int) -> dt.date:
    try:
        return d.replace(year=d.year - years)
    except ValueError:
        return d.replace(year=d.year - years, day=28)


# ----------------------------------------------------------------------------- writing
def _schemas(meta: dict):
    """The Arrow schemas of the four tables (the contract's), carrying the synthetic mark."""

    return {t: arrow_schema(t, meta) for t in TABLES}


def _table(schema, cols):
    """An Arrow table from the block's numpy columns: text through its few distinct values
    (factorize, then take: faster than converting every Python string), dates as
    int32 days with NaT as null."""
    import pandas as pd
    import pyarrow as pa

    arrays = []
    for f in schema:
        v = cols[f.name]
        if pa.types.is_date32(f.type):
            d = v.astype("datetime64[D]")
            nat = np.isnat(d)
            days = pa.array(d.astype(np.int64).astype(np.int32), mask=nat if nat.any() else None)
            arr = days.view(pa.date32())
        elif pa.types.is_string(f.type):
            codes, labels = pd.factorize(v)
            arr = pa.array(np.asarray(labels, dtype=object), type=pa.string()).take(pa.array(codes))
        else:
            arr = pa.array(v, type=f.type)
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=schema)


def practice_plan(patients: int, practices: int, cal: Calibration):
    """Sizes and age shifts of the practices: different sizes (largest about 2.3 times the
    smallest) and mean ages spread over +/- 3 years around the target, weighted to zero."""
    if practices == 1:
        return [patients], [0.0], cal.pub["age_sd"]
    w = np.linspace(0.6, 1.4, practices)
    sizes = np.floor(patients * w / w.sum()).astype(int)
    sizes[-1] += patients - sizes.sum()
    shifts = np.linspace(-3.0, 3.0, practices)
    shifts = shifts - np.average(shifts, weights=sizes)
    between = float(np.average(shifts**2, weights=sizes))
    sd_within = math.sqrt(cal.pub["age_sd"] ** 2 - between)
    return [int(s) for s in sizes], [float(s) for s in shifts], sd_within


def practice_effects(practices: int, seed: int, cal: Calibration) -> list[tuple[float, float]]:
    """Each practice's logit effects on (pain prevalence, target share of the pain cohort):
    none for a single practice; for a network, the target share moves by a normal effect
    with the calibration's ``between_practice_sd`` truncated at 2 SD, from a random stream
    of its own (the blocks' streams are unchanged). The pain prevalence does not move: with
    the practices' age shifts, a young practice with more pain could not hold the calibrated
    ages exactly."""
    sd = float(cal.assume.get("between_practice_sd", 0.0))
    if practices == 1 or sd == 0:
        return [(0.0, 0.0)] * practices
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2**31 - 1]))
    # truncated at 2 SD: a practice beyond cannot hold the calibrated ages exactly
    effects = np.clip(rng.normal(0.0, sd, size=practices), -2 * sd, 2 * sd)
    return [(0.0, float(e)) for e in effects]


def generate(
    out: str | Path | None = None,
    *,
    patients: int = 2503,
    practices: int = 1,
    seed: int = DEFAULT_SEED,
    chunk_size: int = DEFAULT_CHUNK,
    calibration: Path | None = None,
    progress=None,
) -> Path:
    """Write the synthetic database to ``out`` (``data/synthetic`` by default).

    The folder is written beside its destination and moved into place only when
    complete, so a failed run never leaves a half-written database.
    """
    import pyarrow.parquet as pq

    cal = load_calibration(calibration)
    _check_sizes(patients, practices, chunk_size)
    out = Path(out or paths.SYNTHETIC)
    sizes, shifts, sd_within = practice_plan(patients, practices, cal)
    effects = practice_effects(practices, seed, cal)
    meta = {
        "synthetic": "true",
        "warning": "SYNTHETIC DATA - not real patients",
        "generator": "analysis.synth",
        "seed": seed,
        "patients": patients,
        "practices": practices,
        "calibration_sha256": cal.sha256,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        schemas = _schemas(meta)
        writers = {
            t: pq.ParquetWriter(tmp / f"{t}.parquet", s, compression="zstd")
            for t, s in schemas.items()
        }
        next_id = 1
        blocks = [(k, int(s)) for k, size in enumerate(sizes) for s in _split(size, chunk_size)]
        last_of = {k: b for b, (k, _) in enumerate(blocks)}
        excluded = 0
        names = ("patients", "pain_episodes", "diagnoses", "prescriptions")
        with _BackgroundWriter(writers) as background:
            for b, (k, n) in enumerate(blocks):
                rng = np.random.default_rng(np.random.SeedSequence([seed, b]))
                parts = _block(
                    n, rng, cal, shifts[k], sd_within, next_id, f"P{k + 1:02d}", effects[k]
                )
                background.put(
                    {t: _table(schemas[t], cols) for t, cols in zip(names, parts, strict=True)}
                )
                next_id += n
                if progress:
                    progress(next_id - 1 - excluded, patients)
                if b == last_of[k]:  # the practice's patients outside the population
                    counts = exclusion_counts(cal, sizes[k])
                    if sum(counts.values()):
                        rng = np.random.default_rng(np.random.SeedSequence([seed, 1_000_000 + k]))
                        parts = _excluded_block(counts, rng, cal, next_id, f"P{k + 1:02d}")
                        background.put(
                            {
                                t: _table(schemas[t], cols)
                                for t, cols in zip(names, parts, strict=True)
                            }
                        )
                        next_id += sum(counts.values())
                        excluded += sum(counts.values())
        _write_description(tmp, cal, seed, patients, excluded, practices)
        publish_folder(tmp, out, "python -m analysis synth")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check_sizes(patients: int, practices: int, chunk_size: int) -> None:
    """Refuse sizes too small to hold the calibrated proportions."""
    if patients < MIN_BLOCK:
        raise AnalysisError(
            f"--patients must be at least {MIN_BLOCK} (got {patients}): smaller "
            "cohorts cannot hold the calibrated proportions."
        )
    if practices < 1 or patients // practices < MIN_BLOCK:
        raise AnalysisError(
            f"--practices must be at least 1 and leave at least {MIN_BLOCK} "
            f"patients per practice (got {practices} for {patients} patients)."
        )
    if chunk_size < MIN_BLOCK * 5:
        raise AnalysisError(f"chunk size must be at least {MIN_BLOCK * 5}.")


def _write_description(tmp: Path, cal, seed: int, patients: int, excluded: int, practices: int):
    """The folder's ``dataset.json`` (marked synthetic, with how it was made) and README."""
    atomic_write_text(
        tmp / "dataset.json",
        json.dumps(
            {
                "synthetic": True,
                "warning": "SYNTHETIC DATA generated by python -m analysis synth; no row "
                "describes a real patient.",
                "generator": "analysis.synth",
                "seed": seed,
                "patients": patients,
                "patients_outside_the_population": excluded,
                "practices": practices,
                "index_date": cal.raw["index_date"],
                "window_start": cal.raw["window_start"],
                "calibration_sha256": cal.sha256,
            },
            indent=2,
        )
        + "\n",
    )
    atomic_write_text(
        tmp / "README.md",
        "# SYNTHETIC DATA\n\nGenerated by `python -m analysis synth` (seed "
        f"{seed}, {patients} patients in the study population and {excluded} outside it, "
        f"{practices} practice(s)). No row describes a real patient. See data/README.md for "
        "the contract and the calibration.\n",
    )


class _BackgroundWriter:
    """Writes blocks to the Parquet writers in a second thread (compression releases the
    GIL), so that the next block is generated meanwhile; at most one block waits. The
    writers are closed on leaving; an error in the thread is raised in the caller."""

    def __init__(self, writers: dict):
        import queue
        import threading

        self.writers = writers
        self.queue = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="synth-writer", daemon=True)

    def _run(self):
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    for t, table in item.items():
                        self.writers[t].write_table(table, row_group_size=1 << 20)
                except BaseException as exc:  # handed to the caller
                    self.error = exc

    def put(self, tables: dict) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(tables)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.queue.put(None)
        self.thread.join()
        for w in self.writers.values():
            w.close()
        if self.error is not None and exc[0] is None:
            raise self.error
        return False


def _split(n: int, chunk: int):
    k = max(1, math.ceil(n / chunk))
    base = n // k
    return [base + (1 if i < n - base * k else 0) for i in range(k)]
