"""The batch's index page (analysis.batch.index): what it says of each run, read from the
runs' manifests and released tables only; every value escaped by its template."""

from __future__ import annotations

import json
from types import SimpleNamespace

from analysis.batch.index import render_index


def _run(out, name, manifest, tables=None):
    d = out / name
    (d / "tables").mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps(manifest))
    for table, text in (tables or {}).items():
        (d / "tables" / f"{table}.csv").write_text(text)
    return d


ESTIMATE = (
    "target_n,population_n,benefit_fraction,candidates,candidates_low,candidates_high,"
    "pct_of_population,pct_low,pct_high,per_1000,per_1000_low,per_1000_high,per_gp_list,"
    "per_gp_list_low,per_gp_list_high,in_one_list_low,in_one_list_high,gp_list_size,level,"
    "benefit_distribution,ci_method,model\n"
    "121,2503,0.5,60.5,51.2,70.9,2.417,2.05,2.83,24.17,20.5,28.3,36.26,30.7,42.5,25,48,"
    "1500,0.95,fixed,wilson,a fixed share\n"
)


def test_each_run_is_listed_with_its_status_estimate_and_links(tmp_path):
    out = tmp_path / "b"
    _run(out, "paper-03 eligibility", {"notebook": "03_eligibility", "scenario": "paper",
         "status": "ok", "data_is_synthetic": True, "timings": {"total_s": 4.25}},
         {"eligibility_estimate": ESTIMATE})  # fmt: skip
    _run(out, "elderly_80-03_eligibility", {"notebook": "03_eligibility", "scenario": "elderly_80",
         "status": "ok", "data_is_synthetic": True})  # fmt: skip
    failed = _run(out, "x-01_cohort_profile", {"notebook": "01_cohort_profile", "status":
                  "failed", "error": {"cell": 4, "error": "ValueError: bad"}})  # fmt: skip
    failed.rename(out / "x-01_cohort_profile.failed")
    runs = [SimpleNamespace(name=n) for n in ("paper-03 eligibility", "not-yet")]
    page = render_index(SimpleNamespace(out=out, runs=runs, name="b", path=tmp_path / "b.yaml"))
    # the estimate table: the paper's scenario with its numbers, elderly_80 withheld
    assert "<td class='num'>60.5 (51.2-70.9)</td>" in page
    assert "<td class='num'>36.3 (30.7-42.5)</td>" in page and "25-48" in page
    assert "at least: fixed 0.50" in page
    assert "<td>elderly_80-03_eligibility</td><td>elderly_80</td><td class='num'>withheld" in page
    # runs: listed in the batch's order, then the others; one not run; the failure named
    assert page.index("paper-03 eligibility") < page.index("not-yet")
    assert "<td>not-yet</td><td class='stale'>not run</td>" in page
    assert "<span class='failed'>cell 4: ValueError: bad</span>" in page
    assert "href='paper-03%20eligibility/03_eligibility.html'" in page  # a link, quoted
    assert "<td class='num'>4.2 s</td>" in page  # 4.25 to one decimal, half to even
    assert "Synthetic data." in page and "User data." not in page
