"""No patient-level value and no secret leaves through any output of a batch on data not
marked synthetic: marker values are planted in the database and in the environment, and
every output file is scanned for them."""

import shutil

import pandas as pd
import pytest

from analysis.batch import load_batch, run_batch

pytestmark = pytest.mark.slow

MARK_ID = 9876543210
MARK_BIRTH = "1931-07-17"
MARK_DATE = "2011-11-11"
MARK_SECRET = "S3cret-Marker-Password!"


@pytest.fixture(scope="module")
def real_db(small_db, tmp_path_factory):
    """The small cohort as CSV without the synthetic mark, with planted markers."""
    folder = tmp_path_factory.mktemp("real") / "practice"
    folder.mkdir()
    tables = {t: pd.read_parquet(small_db / f"{t}.parquet") for t in
              ("patients", "diagnoses", "pain_episodes", "prescriptions")}
    pts = tables["patients"]
    old = pts.loc[0, "patient_id"]
    pts.loc[0, "patient_id"] = MARK_ID
    pts.loc[0, "birth_date"] = pd.Timestamp(MARK_BIRTH).date()
    for t in ("diagnoses", "pain_episodes", "prescriptions"):
        df = tables[t]
        df.loc[df["patient_id"] == old, "patient_id"] = MARK_ID
        df.loc[df["patient_id"] == MARK_ID, "date"] = pd.Timestamp(MARK_DATE).date()
    for t, df in tables.items():
        df.to_csv(folder / f"{t}.csv", index=False)
    return folder


def test_no_marker_in_any_output(real_db, tmp_path, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", MARK_SECRET)
    f = tmp_path / "real.yaml"
    f.write_text(f"name: real\ndata: {real_db}\nscenarios: {{paper: {{}}}}\n")
    b = load_batch(f, reports=tmp_path / "reports")
    results = run_batch(b, jobs=2, progress=False)
    assert all(r["status"] == "ok" for r in results), results
    files = [p for p in b.out.rglob("*") if p.is_file()]
    assert len(files) > 40
    for p in files:
        data = p.read_bytes()
        for marker in (str(MARK_ID), MARK_BIRTH, MARK_DATE, MARK_SECRET):
            assert marker.encode() not in data, (p, marker)
    index = (b.out / "index.html").read_text()
    assert "User data" in index and "Synthetic data" not in index
    # the disclosure rule is on for data not marked synthetic
    sex = pd.read_csv(b.out / "paper-01_cohort_profile" / "tables" / "sex.csv")
    assert set(sex["disclosure"]) == {"opensafely"} and (sex["numerator"].dropna() % 5 == 0).all()
    shutil.rmtree(b.out)


def test_release_sheet_and_not_for_release_stamp(real_db, tmp_path):
    f = tmp_path / "check.yaml"
    f.write_text(f"name: check\ndata: {real_db}\nscenarios: {{paper: {{}}, unrounded: {{disclosure: 'off'}}}}\n"
                 "runs:\n  - notebooks: [03_eligibility]\n    scenarios: all\n")
    b = load_batch(f, reports=tmp_path / "reports")
    names = [r.name for r in b.runs]
    assert names == ["paper-03_eligibility", "unrounded-03_eligibility-NOT-FOR-RELEASE"]
    assert all(r["status"] == "ok" for r in run_batch(b, jobs=2, progress=False))
    html = (b.out / names[1] / "03_eligibility.html").read_text()
    assert "NOT FOR RELEASE" in html
    assert "NOT FOR RELEASE" not in (b.out / names[0] / "03_eligibility.html").read_text()
    sheet = (b.out / "release.md").read_text()
    assert "opensafely rule" in sheet and "tables/attrition.csv" in sheet and "NOT FOR RELEASE" in sheet


def test_outputs_of_real_data_stay_under_reports(real_db, tmp_path):
    from analysis import paths
    from analysis.errors import AnalysisError

    f = tmp_path / "x.yaml"
    f.write_text(f"name: x\ndata: {real_db}\n")
    b = load_batch(f, reports=paths.ROOT / "notebooks" / "oops")
    with pytest.raises(AnalysisError, match="must go under"):
        run_batch(b, jobs=1, progress=False)
    assert not (paths.ROOT / "notebooks" / "oops").exists()
