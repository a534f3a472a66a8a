"""Disclosure by audit across a whole batch (issue 26): a brute-force attacker, written apart
from the auditor (``batch_attacker``), reads every file a batch of every notebook released
about a small practice (not marked synthetic) under the ``ohdsi`` rule, and finds no small
count it can pin."""

from __future__ import annotations

import random
import re

import batch_attacker as ba
import pytest

from conftest import dx, pain, patient, run_cli, write_db


def _practice(folder, seed):
    """Patients of the attacker's kinds in random numbers (0-6 of each; nobody aged 60)."""
    rng = random.Random(seed)
    truth = {k: (0 if ba.AGES[k[1]] == 60 else rng.randint(0, 6)) for k in ba.KINDS}
    pts, eps, dxs, i = [], [], [], 0
    for (sex, age, status), k in truth.items():
        for _ in range(k):
            pts.append(patient(i, birth=f"{2015 - ba.AGES[age]}-03-01", sex=sex))
            if status == "recurrent":
                eps += [pain(i, date="2009-05-01"), pain(i, date="2011-05-01")]
                dxs.append(dx(i, "401.9"))
            i += 1
    write_db(folder, {"patients": pts, "pain_episodes": eps, "diagnoses": dxs})
    return truth


@pytest.mark.parametrize("seed", [1, 2])
def test_a_brute_force_attacker_finds_nothing_in_a_whole_batch(tmp_path, seed):
    """Every notebook (01-07) and notebook 03 again at elderly age 65, one batch, one
    reports folder. The attacker reads every count of every results.csv and table (Table
    1, ages by sex and year, the pyramid, prevalences, attrition, the sensitivity grid, the
    reproduction), enumerates every practice consistent with them, and pins no withheld
    count of 1 to 4 patients. Had the single-year counts been released as the rule alone
    allows, it would have (the attacker can find what is there)."""
    truth = _practice(tmp_path / "practice", seed)
    (tmp_path / "batch.yaml").write_text(
        "name: attack\n"
        f"data: {tmp_path / 'practice'}\n"
        "scenarios:\n  paper: {}\n  elderly_65: {elderly_age: 65}\n"
        "runs:\n  - notebooks: all\n    scenarios: [paper]\n"
        "  - notebooks: [03_eligibility]\n    scenarios: [elderly_65]\n"
    )
    reports = tmp_path / "reports"
    done = run_cli("batch", tmp_path / "batch.yaml", "--reports", reports,
                   "--disclosure", "ohdsi", "--jobs", 2, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # every page reads with its values withheld (issue 27): no sentence built on one
    pages = [*(tmp_path / "reports" / "attack").rglob("*.html"),
             *(tmp_path / "reports" / "attack").rglob("*.md")]  # fmt: skip
    assert len(pages) >= 10
    for page in pages:
        text = re.sub(r"data:image/[^\"')]+", "", page.read_text(encoding="utf-8"))
        for bad in ("withheld were", "withheld%", "withheld-withheld", " nan ", ">nan<", "NaN"):
            assert bad not in text, (page.name, bad)
    released = ba.read_batch(tmp_path / "reports" / "attack")
    assert len(released.read) >= 15  # every run's results.csv and the tables were read
    assert ba.attack(released, truth) == {}
    # the control: every single-year count by sex released as well
    for sex in "FM":
        for age in ba.AGES.values():
            ks = ba.kinds(sex=sex, ages={age})
            released.counts.append((ks, sum(truth[ba.KINDS[i]] for i in ks)))
    assert any(1 <= truth[(s, a, "none")] + truth[(s, a, "recurrent")] < ba.THRESHOLD
               for s in "FM" for a in ba.AGES)  # fmt: skip
    assert ba.attack(released, truth) != {}
