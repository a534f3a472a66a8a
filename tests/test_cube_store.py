"""A batch's shared cube store (issue 29): a run reads the cube query's result an earlier
run of the batch computed, and only when nothing that decides it has changed.

Every check compares the study computed through the store with the same study computed with
no store at all (the engine's own answer), never with a stored value."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from analysis import cohort, cube_store, paths
from analysis.codelists import _read
from analysis.params import Params
from analysis.study import run_study

pytestmark = pytest.mark.xdist_group("test_cube_store")

# every definition parameter changed from the paper's (each shapes the cube's query), and
# parameters that do not shape it (the study's numbers must still follow them)
CHANGES = [
    {"index_date": "2013-06-30"},
    {"lookback_years": 5},
    {"population": "all_patients"},
    {"population": "registered_on_index_date"},
    {"pain_sites": ["knee", "hip"]},
    {"pain_causes": ["osteoarticular", "other"]},
    {"min_severity": 7},
    {"min_episodes": 3},
    {"risk_conditions": ["risk_condition_hypertension"]},
    {"risk_drugs": ["risk_drug_ssri"]},
    {"events_outside_registration": "leave_out"},
    {"elderly_age": 65},
    {"benefit_fraction": 0.8},
]


def _numbers(study):
    """What a notebook shows of a study: the attrition and the eligibility estimate."""
    attrition = cohort.attrition_table(study.cube, study.params)
    return attrition["n"].tolist(), study.eligibility().candidates


@pytest.fixture
def store(tmp_path, monkeypatch):
    folder = tmp_path / "cubes"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv(cube_store.ENV, str(folder))
    return folder


def _without_store(monkeypatch, data, params, **kw):
    with monkeypatch.context() as m:
        m.delenv(cube_store.ENV)
        return run_study(data, params, **kw)


def test_a_second_run_reads_the_first_runs_cube_and_finds_the_same_numbers(
    store, small_db, monkeypatch
):
    asked, load = [], cube_store.load

    def recorded(*args):
        asked.append(load(*args))
        return asked[-1]

    monkeypatch.setattr(cube_store, "load", recorded)
    first = run_study(small_db, Params(), drug_counts=True)
    second = run_study(small_db, Params(), drug_counts=True)
    assert asked[0] is None and asked[1] is not None  # computed, then read back
    assert len(list(store.glob("*.npz"))) == 1
    alone = _without_store(monkeypatch, small_db, Params(), drug_counts=True)
    assert _numbers(first) == _numbers(second) == _numbers(alone)
    for name, col in alone.cube.columns.items():
        np.testing.assert_array_equal(second.cube.columns[name], col)
        assert second.cube.columns[name].dtype == col.dtype, name


@pytest.mark.parametrize("change", CHANGES, ids=lambda c: next(iter(c)))
def test_a_changed_parameter_never_reads_a_stale_cube(change, store, small_db, monkeypatch):
    run_study(small_db, Params())  # the paper's cube in the store
    params = Params.from_mapping(change)
    through_store = run_study(small_db, params)
    assert _numbers(through_store) == _numbers(_without_store(monkeypatch, small_db, params))
    # a parameter that shapes the query is another key; the age limit and the benefit share
    # are applied to the cube, so the paper's cube answers them
    shared = set(change) <= {"elderly_age", "benefit_fraction"}
    assert len(list(store.glob("*.npz"))) == (1 if shared else 2)


def test_a_changed_code_list_or_data_file_is_another_key(store, small_db, tmp_path, monkeypatch):
    run_study(small_db, Params())
    # a code list with its first code removed
    lists = tmp_path / "codelists"
    shutil.copytree(paths.CODELISTS, lists)
    f = lists / "risk_condition_hypertension.csv"
    lines = f.read_text().splitlines(keepends=True)
    f.write_text("".join(lines[:1] + lines[2:]))
    monkeypatch.setattr(paths, "CODELISTS", lists)
    _read.cache_clear()
    assert _numbers(run_study(small_db, Params())) == _numbers(
        _without_store(monkeypatch, small_db, Params())
    )
    # a data file changed (another cohort's diagnoses in the same folder)
    data = tmp_path / "data"
    shutil.copytree(small_db, data)
    run_study(data, Params())
    rows = data / "diagnoses.parquet"
    table = pq.read_table(rows)
    pq.write_table(table.slice(0, table.num_rows // 2), rows)
    assert _numbers(run_study(data, Params())) == _numbers(
        _without_store(monkeypatch, data, Params())
    )


@pytest.mark.parametrize(
    "plant",
    ["junk bytes", "arrays of two lengths", "an object array (pickle)", "a link", "2-D array"],
)
def test_a_hostile_file_in_the_store_is_ignored(plant, store, small_db, monkeypatch):
    run_study(small_db, Params())
    (stored,) = store.glob("*.npz")
    stored.unlink()
    if plant == "junk bytes":
        stored.write_bytes(b"PK\x03\x04 not an archive")
    elif plant == "arrays of two lengths":
        np.savez(stored, age=np.arange(3), n=np.arange(4))
    elif plant == "an object array (pickle)":
        np.savez(stored, age=np.array([{"x": 1}], dtype=object))
    elif plant == "a link":
        target = store.parent / "elsewhere.npz"
        np.savez(target, age=np.arange(3), n=np.ones(3, dtype=np.int64))
        os.symlink(target, stored)
    else:
        np.savez(stored, age=np.ones((2, 2)), n=np.ones((2, 2)))
    assert cube_store.load(store, stored.stem) is None
    assert _numbers(run_study(small_db, Params())) == _numbers(
        _without_store(monkeypatch, small_db, Params())
    )


def test_a_store_that_is_a_link_or_another_users_is_not_used(tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    monkeypatch.setenv(cube_store.ENV, str(link))
    assert cube_store.folder() is None
    monkeypatch.setenv(cube_store.ENV, str(tmp_path / "missing"))
    assert cube_store.folder() is None
    monkeypatch.setenv(cube_store.ENV, str(real))
    assert cube_store.folder() == real
