"""`python -m analysis figures`: the machine-readable summary, on the synthetic default."""

import json
import subprocess
import sys

import pytest

from conftest import PUB, run_cli

# module-scoped fixtures (or fixed database schemas): one worker of a parallel run
pytestmark = pytest.mark.xdist_group("test_figures_command")

PUBLISHED_IDS = [
    "population.n",
    "population.age_mean",
    "population.age_sd",
    "population.age_min",
    "population.age_max",
    "population.female_pct",
    "pain.n",
    "pain.pct_of_population",
    "pain.age_mean",
    "pain.age_sd",
    "pain.male_pct",
    "pain_risk.n",
    "pain_risk.pct_of_pain",
    "target.n",
    "target.pct_of_pain",
    "target.pct_of_population",
    "candidates.n",
    "candidates.pct_of_population",
    "candidates.per_gp_list",
]


@pytest.fixture(scope="module")
def figures(default_db):
    r = run_cli("figures", "--data", str(default_db), "--json", check=True)
    return {f["id"]: f for f in json.loads(r.stdout)}


def test_every_published_id_is_there_with_its_shape(figures):
    for i in PUBLISHED_IDS:
        assert i in figures, i
        assert {"id", "description", "value"} <= set(figures[i])
    for i in ("population.female_pct", "pain.pct_of_population", "target.pct_of_pain"):
        assert {"numerator", "denominator", "ci_low", "ci_high"} <= set(figures[i])
        assert figures[i]["ci_low"] < figures[i]["value"] < figures[i]["ci_high"]


def test_the_published_figures_at_printed_precision(figures):
    v = {k: f["value"] for k, f in figures.items()}
    P = PUB  # the published figures, from data/reference/published.csv
    assert v["population.n"] == P["population.n"]  # P1
    assert round(v["population.age_mean"], 2) == P["population.age_mean"]  # P2
    assert round(v["population.age_sd"], 2) == P["population.age_sd"]
    assert (v["population.age_min"], v["population.age_max"]) == (14, 98)  # P3
    assert round(v["population.female_pct"], 2) == P["population.female_pct"]  # P4 (percent)
    assert v["pain.n"] == P["pain.n"]  # P5
    assert round(v["pain.pct_of_population"], 2) == P["pain.pct_of_population"]
    assert round(v["pain.age_mean"]) == 57  # P6 (the SD 1.52 is impossible)
    assert round(v["pain.male_pct"], 1) == P["pain.male_pct"]  # P7
    assert v["pain_risk.n"] == P["pain_risk.n"]  # P8
    assert round(v["pain_risk.pct_of_pain"], 1) == P["pain_risk.pct_of_pain"]
    assert round(v["target.pct_of_pain"], 2) == P["target.pct_of_pain"]  # P9
    assert round(v["target.pct_of_population"], 1) == 4.8
    assert v["candidates.n"] == pytest.approx(121 * 0.5)  # P10 at the assumed 50%


def test_percentages_are_unrounded(figures):
    assert figures["population.female_pct"]["value"] == pytest.approx(100 * 1452 / 2503, abs=1e-12)


def test_the_readable_table(default_db):
    r = run_cli("figures", "--data", str(default_db), check=True)
    assert "synthetic default data, n = 2,503" in r.stdout and "target.pct_of_pain" in r.stdout


def test_parameters_from_the_command_line_and_a_file(default_db, tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("elderly_age: 80\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            "figures",
            "--data",
            str(default_db),
            "--json",
            "--params",
            str(f),
            "--set",
            "min_episodes=3",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    v = {x["id"]: x["value"] for x in json.loads(r.stdout)}
    assert v["target.n"] < 121


def test_a_misspelt_parameter_on_the_command_line(default_db):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            "figures",
            "--data",
            str(default_db),
            "--set",
            "elderly_agee=80",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and r.stdout == ""
    assert "elderly_agee" in r.stderr and "did you mean 'elderly_age'" in r.stderr
