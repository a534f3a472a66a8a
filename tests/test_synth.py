"""The synthetic default cohort: deterministic, calibrated, marked synthetic.

The published figures are recomputed here with plain pandas and the code-list files,
independently of the analysis module, and compared at the paper's printed precision.
"""

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from analysis import synth
from analysis.errors import AnalysisError
from conftest import PUB, ROOT

TABLES = ("patients", "diagnoses", "pain_episodes", "prescriptions")


def prefixes(glob):
    out = []
    for f in (ROOT / "data" / "codelists").glob(glob):
        out += [c.replace(".", "") for c in pd.read_csv(f, dtype=str)["code"]]
    return tuple(out)


def paper_figures(folder):
    """P1-P9 by the paper's definitions, in plain pandas."""
    t = {n: pd.read_parquet(folder / f"{n}.parquet") for n in TABLES}
    pts = t["patients"].copy()
    idx = pd.Timestamp("2015-12-31")
    # the population: registered on or before the index date, not deregistered before the
    # window opened (1 January 2006), born on or before the index date
    reg_to = pd.to_datetime(pts["registered_to"])
    pts = pts[
        (pd.to_datetime(pts["registered_from"]) <= idx)
        & (reg_to.isna() | (reg_to >= "2006-01-01"))
        & (pd.to_datetime(pts["birth_date"]) <= idx)
    ].copy()
    b = pd.to_datetime(pts["birth_date"])
    had_birthday = (b.dt.month < idx.month) | ((b.dt.month == idx.month) & (b.dt.day <= idx.day))
    pts["age"] = idx.year - b.dt.year - (~had_birthday).astype(int)
    pe = t["pain_episodes"]
    d = pd.to_datetime(pe["date"])
    q = pe[
        pe["site"].isin(["hip", "neck", "back", "knee"])
        & (pe["severity"] >= 4)
        & (pe["cause"] == "osteoarticular")
        & (d >= "2006-01-01")
        & (d <= "2015-12-31")
    ]
    nq = q.groupby("patient_id").size()
    pts["n_q"] = pts["patient_id"].map(nq).fillna(0)
    dxx = t["diagnoses"]
    codes = dxx["code"].str.replace(".", "", regex=False)
    risk_dx = dxx[
        codes.str.startswith(prefixes("risk_condition_*.csv"))
        & (pd.to_datetime(dxx["date"]) <= idx)
    ]
    rxx = t["prescriptions"]
    risk_rx = rxx[
        rxx["atc_code"].str.startswith(prefixes("risk_drug_*.csv"))
        & (pd.to_datetime(rxx["date"]) <= idx)
    ]
    pts["cond"] = pts["patient_id"].isin(risk_dx["patient_id"])
    pts["drug"] = pts["patient_id"].isin(risk_rx["patient_id"])
    pain = pts[pts["n_q"] >= 1]
    target = pain[(pain["n_q"] >= 2) & (pain["age"] >= 75) & (pain["cond"] | pain["drug"])]
    n = len(pts)
    return {
        "P1": n,
        "P2 mean": round(pts["age"].mean(), 2),
        "P2 sd": round(pts["age"].std(ddof=1), 2),
        "P3": (pts["age"].min(), pts["age"].max()),
        "P4": round(100 * (pts["sex"] == "F").mean(), 2),
        "P5": (len(pain), round(100 * len(pain) / n, 2)),
        "P6": round(pain["age"].mean()),
        "P7": round(100 * (pain["sex"] == "M").mean(), 1),
        "P8": (int(pain["cond"].sum()), round(100 * pain["cond"].mean(), 1)),
        "P9": (round(100 * len(target) / len(pain), 2), round(100 * len(target) / n, 1)),
    }


def test_default_cohort_reproduces_every_published_figure(default_db):
    f = paper_figures(default_db)
    P = PUB  # data/reference/published.csv
    assert f["P1"] == P["population.n"]
    assert f["P2 mean"] == P["population.age_mean"] and f["P2 sd"] == P["population.age_sd"]
    assert f["P3"] == (P["population.age_min"], P["population.age_max"])
    assert f["P4"] == P["population.female_pct"]
    assert f["P5"] == (P["pain.n"], P["pain.pct_of_population"])
    assert f["P6"] == P["pain.age_mean"]
    assert f["P7"] == P["pain.male_pct"]
    assert f["P8"] == (P["pain_risk.n"], P["pain_risk.pct_of_pain"])
    assert f["P9"] == (P["target.pct_of_pain"], P["target.pct_of_population"])


def test_the_default_holds_patients_the_population_leaves_out(default_db):
    """40 deregistered before the window, 25 registered after the index date, 10 born
    after it (data/synthetic_calibration.yaml), each with qualifying pain episodes in the
    window or after birth and a risk condition: counted, they would change the figures."""
    pts = pd.read_parquet(default_db / "patients.parquet")
    reg_from, reg_to = pd.to_datetime(pts["registered_from"]), pd.to_datetime(pts["registered_to"])
    assert len(pts) == 2503 + 75
    assert (reg_to < "2006-01-01").sum() == 40
    assert (reg_from > "2015-12-31").sum() - (
        pd.to_datetime(pts["birth_date"]) > "2015-12-31"
    ).sum() == 25
    assert (pd.to_datetime(pts["birth_date"]) > "2015-12-31").sum() == 10
    everyone = paper_figures_without_population(default_db)
    assert everyone["P5"][0] > 827 and everyone["P1"] == 2578


def paper_figures_without_population(folder):
    """The same recomputation with every patient of the files (what ignoring
    registration would give)."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    for f in folder.iterdir():
        shutil.copy(f, tmp / f.name)
    pts = pd.read_parquet(tmp / "patients.parquet")
    pts["registered_from"] = pd.Timestamp("1980-01-01").date()
    pts["registered_to"] = None
    pts["birth_date"] = (
        pd.to_datetime(pts["birth_date"]).clip(upper=pd.Timestamp("2015-12-31")).dt.date
    )
    pts.to_parquet(tmp / "patients.parquet", index=False)
    return paper_figures(tmp)


def test_naive_counts_give_different_answers(default_db):
    """Mild episodes, other sites and causes and episodes outside the window exist, so
    counting every patient with any pain episode overstates the pain cohort."""
    pe = pd.read_parquet(default_db / "pain_episodes.parquet")
    assert pe["patient_id"].nunique() > 827 + 200
    assert (pe["severity"] < 4).any() and (~pe["site"].isin(["hip", "neck", "back", "knee"])).any()
    assert (pe["cause"] != "osteoarticular").any() and (
        pd.to_datetime(pe["date"]) < "2006-01-01"
    ).any()
    dxx = pd.read_parquet(default_db / "diagnoses.parquet")
    assert (~dxx["code"].str.contains(r"\.")).any()  # codes without dots exist


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = synth.generate(tmp_path / "a", patients=500, seed=11)
    b = synth.generate(tmp_path / "b", patients=500, seed=11)
    for name in [f"{t}.parquet" for t in TABLES] + ["dataset.json"]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_another_seed_gives_other_rows_but_the_same_figures(tmp_path, default_db):
    other = synth.generate(tmp_path / "other", seed=99)
    assert (other / "patients.parquet").read_bytes() != (
        default_db / "patients.parquet"
    ).read_bytes()
    assert paper_figures(other) == paper_figures(default_db)


def test_larger_cohort_holds_the_figures_as_proportions(tmp_path):
    f = paper_figures(synth.generate(tmp_path / "big", patients=25030, seed=3, chunk_size=5000))
    assert f["P1"] == 25030
    P = PUB
    assert abs(f["P2 mean"] - P["population.age_mean"]) <= 0.01
    assert abs(f["P2 sd"] - P["population.age_sd"]) <= 0.02
    assert f["P4"] == pytest.approx(P["population.female_pct"], abs=0.02)
    assert f["P5"][1] == pytest.approx(P["pain.pct_of_population"], abs=0.02)
    assert f["P8"][1] == pytest.approx(P["pain_risk.pct_of_pain"], abs=0.1)
    assert f["P9"][0] == pytest.approx(P["target.pct_of_pain"], abs=0.05)


def test_several_practices_of_different_size_and_age(tmp_path):
    folder = synth.generate(tmp_path / "k", patients=3000, practices=3, seed=5)
    pts = pd.read_parquet(folder / "patients.parquet")
    sizes = pts.groupby("practice_id").size()
    assert list(sizes.index) == ["P01", "P02", "P03"]
    assert sizes.iloc[0] < sizes.iloc[1] < sizes.iloc[2]
    ages = 2015 - pd.to_datetime(pts["birth_date"]).dt.year
    means = ages.groupby(pts["practice_id"]).mean()
    assert means.iloc[0] < means.iloc[1] < means.iloc[2]
    assert pts["patient_id"].is_unique


def test_every_file_says_it_is_synthetic(default_db):
    for t in TABLES:
        md = pq.read_schema(default_db / f"{t}.parquet").metadata
        assert md[b"synthetic"] == b"true"
    assert json.loads((default_db / "dataset.json").read_text())["synthetic"] is True
    assert "SYNTHETIC" in (default_db / "README.md").read_text()


def test_too_small_a_cohort_is_refused_and_nothing_written(tmp_path):
    with pytest.raises(AnalysisError, match="--patients"):
        synth.generate(tmp_path / "tiny", patients=50)
    assert not (tmp_path / "tiny").exists()
    assert not list(tmp_path.glob(".tiny*"))
