"""Files from others are data: each attack of issue 24 as a test, then property tests.

An attacker writes the files a researcher is sent (a run manifest, a mapping template, a
batch or parameter file, a report folder, a site's results). Whatever they hold, the
commands either refuse them with a message or treat them as data: no code runs, no SQL is
parsed from them, nothing outside the output folder changes. The checks live in one place
each: names and YAML in :mod:`analysis.inputs`, SQL quoting in :mod:`analysis.engines`,
writes in :mod:`analysis.files`, manifests and papermill's parameters in
:mod:`analysis.batch.checked`.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.errors import AnalysisError
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "data" / "examples" / "import"


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (links not followed) with its bytes: what must not change."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_symlink():
            out[str(p)] = ("link", os.readlink(p))
        elif p.is_file():
            out[str(p)] = p.read_bytes()
    return out


# ----------------------------------------------------------------------------- 1. rerun
def _manifest(tmp_path: Path, **changes) -> Path:
    from analysis.params import Params

    m = {
        "notebook": "03_eligibility",
        "status": "ok",
        "resolved_parameters": Params().to_dict(),
        "parameters": {"data": str(tmp_path / "no-data")},
        "input_fingerprint": {},
    }
    m.update(changes)
    run = tmp_path / "reports" / "b" / "paper-03_eligibility"
    run.mkdir(parents=True, exist_ok=True)
    (run / "manifest.json").write_text(json.dumps(m))
    return run / "manifest.json"


def test_rerun_refuses_a_parameter_name_that_is_code(tmp_path):
    """Attack 1: a parameter *name* holding Python ran in the injected cell; now refused
    before papermill is called, and the command it held never runs."""
    from analysis.params import Params

    marker = tmp_path / "pwned"
    evil = f"_a = 1\nimport os as _os; _os.system('touch {marker}')\n_b"
    manifest = _manifest(tmp_path, resolved_parameters={**Params().to_dict(), evil: 1})
    done = run_cli("rerun", manifest)
    assert done.returncode != 0
    assert "is not a declared parameter" in done.stderr and "Nothing was run" in done.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "notebook", ["/tmp/elsewhere/evil", "../notebooks/03_eligibility", "03_eligibility\n", "99_x"]
)
def test_rerun_runs_only_the_projects_own_notebooks(tmp_path, notebook):
    """Attack 1: the manifest's notebook field named a foreign notebook, which rerun
    executed and wrote back over; now only notebooks/NN_name.ipynb of the project runs."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "evil.ipynb").write_text("{}")
    before = snapshot(elsewhere)
    done = run_cli("rerun", _manifest(tmp_path, notebook=notebook.replace("/tmp", str(tmp_path))))
    assert done.returncode != 0 and "notebook" in done.stderr
    assert snapshot(elsewhere) == before


def test_rerun_refuses_a_notebook_that_is_not_the_one_the_run_used(tmp_path):
    manifest = _manifest(tmp_path, notebook_sha256="0" * 64)
    done = run_cli("rerun", manifest)
    assert done.returncode != 0 and "not the notebook the run used" in done.stderr


def test_papermill_receives_only_declared_names_and_typed_values():
    from analysis.batch.checked import papermill_parameters

    ok = papermill_parameters({"elderly_age": 80, "data": "x", "grid": None}, source="t")
    assert ok == {"elderly_age": 80, "data": "x", "grid": None}
    for bad, said in [
        ({"elderly_age = 1; import os": 1}, "not a declared parameter"),
        ({"os": 1}, "not a declared parameter"),
        ({"elderly_age": {"x": 1}}, "is not a value a parameter takes"),
        ({"elderly_age": float("inf")}, "is not a value a parameter takes"),
        ({"data": ["x"]}, "must be a path"),
        ({"elderly_age": "eighty"}, "elderly_age"),
    ]:
        with pytest.raises(AnalysisError, match=said):
            papermill_parameters(bad, source="t")


# ----------------------------------------------------------------------------- 2. mapping
def _example(folder: Path) -> Path:
    shutil.copytree(EXAMPLE, folder)
    return folder / "mapping.yaml"


def test_a_delimiter_that_closes_the_sql_string_is_refused_and_writes_nothing(tmp_path):
    """Attack 2: ``csv: {delimiter: ...}`` was pasted into read_csv(...): a delimiter that
    closed the string and added COPY ... TO wrote an arbitrary file. Now reader options
    come from a declared list with typed values."""
    mapping = _example(tmp_path / "src")
    target = tmp_path / "written-by-sql.csv"
    evil = f"';COPY (SELECT 42) TO '{target}'; SELECT '"
    text = mapping.read_text().replace('csv: {delimiter: ";"}', f'csv: {{delimiter: "{evil}"}}')
    assert evil in text
    mapping.write_text(text)
    done = run_cli("import", "--mapping", mapping, "--into", tmp_path / "out")
    assert done.returncode != 0 and "delimiter: expected one character" in done.stderr
    assert not target.exists() and not (tmp_path / "out").exists()


def test_an_unknown_reader_option_is_refused_by_name(tmp_path):
    mapping = _example(tmp_path / "src")
    mapping.write_text(
        mapping.read_text().replace('csv: {delimiter: ";"}', 'csv: {delimiter: ";", delim: x}')
    )
    done = run_cli("import", "--mapping", mapping, "--into", tmp_path / "out")
    assert done.returncode != 0
    assert "unknown option 'delim'" in done.stderr and "did you mean 'delimiter'" in done.stderr


def test_the_readme_example_import_works_from_a_folder_named_o_brien(tmp_path):
    """The honest version of attack 2: a quote in a path was parsed as SQL."""
    home = tmp_path / "o'brien; DROP TABLE x"
    mapping = _example(home / "import")
    done = run_cli("import", "--mapping", mapping, "--into", home / "contract 'ü'", cwd=home)
    assert done.returncode == 0, done.stderr
    assert {p.name for p in (home / "contract 'ü'").glob("*.parquet")} == {
        "patients.parquet",
        "diagnoses.parquet",
        "pain_episodes.parquet",
        "prescriptions.parquet",
    }


def test_omop_paths_and_schema_names_are_data(tmp_path):
    """A DuckDB OMOP file in a folder with a quote, its tables in a schema with a quote."""
    import duckdb

    from analysis.omop import _attach

    folder = tmp_path / "it's here"
    folder.mkdir()
    db = folder / "cdm.duckdb"
    con = duckdb.connect(str(db))
    con.execute('CREATE SCHEMA "cdm""; x"')
    con.execute('CREATE TABLE "cdm""; x".person (person_id INTEGER)')
    con.execute('INSERT INTO "cdm""; x".person VALUES (1), (2)')
    con.close()
    con = duckdb.connect()
    found = _attach(con, db)
    assert "person" in found
    assert con.execute("SELECT count(*) FROM omop_person").fetchone()[0] == 2


def test_sql_quoting_refuses_nul():
    from analysis.engines import sql_identifier, sql_literal

    for f in (sql_literal, sql_identifier):
        with pytest.raises(AnalysisError, match="NUL"):
            f("a\x00b")


# ----------------------------------------------------------------------------- 3. links
def test_a_batch_never_writes_through_a_link_planted_in_its_folder(tmp_path, small_db):
    """Attack 3: links under the names of the batch's own temporaries made it overwrite
    the files they pointed at. A link in a report folder now stops the batch before it
    starts, and every write goes through an exclusive temporary."""
    from analysis.batch import load_batch, run_batch

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    f = tmp_path / "b.yaml"
    f.write_text(f"name: linked\ndata: {small_db}\nruns:\n  - notebooks: [01_cohort_profile]\n")
    batch = load_batch(f, reports=tmp_path / "reports")
    batch.out.mkdir(parents=True)
    for name in (".index.html.tmp", ".release.md.tmp", "index.html"):
        (batch.out / name).symlink_to(victim)
        with pytest.raises(AnalysisError, match="did not write"):
            run_batch(batch, jobs=1, progress=False)
        (batch.out / name).unlink()
    assert victim.read_text() == "precious\n"


def test_a_report_folder_that_is_a_link_is_refused(tmp_path, small_db):
    from analysis.batch import load_batch, run_batch

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    f = tmp_path / "b.yaml"
    f.write_text(f"name: linked\ndata: {small_db}\n")
    batch = load_batch(f, reports=tmp_path / "reports")
    batch.out.parent.mkdir(parents=True)
    batch.out.symlink_to(elsewhere)
    with pytest.raises(AnalysisError, match="symbolic link"):
        run_batch(batch, jobs=1, progress=False)
    assert list(elsewhere.iterdir()) == []


def test_the_writer_replaces_a_link_and_never_writes_through_it(tmp_path):
    from analysis.files import atomic_write_text

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").symlink_to(victim)
    atomic_write_text(out / "index.html", "report\n", within=out)
    assert victim.read_text() == "precious\n"
    assert not (out / "index.html").is_symlink() and (out / "index.html").read_text() == "report\n"
    (tmp_path / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(AnalysisError, match="symbolic link"):
        atomic_write_text(tmp_path / "linked" / "x.txt", "x", within=tmp_path)
    with pytest.raises(AnalysisError, match="outside the output folder"):
        atomic_write_text(out / ".." / "escaped.txt", "x", within=out)
    assert not (tmp_path / "escaped.txt").exists()


# ----------------------------------------------------------------------------- 4. logs
def test_problem_logs_are_private_and_do_not_pile_up(tmp_path, monkeypatch):
    from analysis import credentials

    logs = tmp_path / "logs"
    monkeypatch.setenv("ANALYSIS_LOG_DIR", str(logs))
    path = credentials.write_problem_log("row 38: found '1920-01-01'", "problems")
    assert logs.stat().st_mode & 0o777 == 0o700
    assert path.stat().st_mode & 0o777 == 0o600
    # 60 more logs, 10 of them 31 days old: the old ones go, then all but the newest 50
    old = time.time() - 31 * 86400
    for i in range(60):
        p = logs / f"problems-2026010{i:02d}.log"
        p.write_text("x")
        if i < 10:
            os.utime(p, (old, old))
    credentials.write_problem_log("another", "problems")
    kept = credentials.problem_logs()
    assert len(kept) == credentials.LOG_KEEP_FILES
    assert all(p.stat().st_mtime > old + 86400 for p in kept)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in kept)
    done = run_cli("logs", "--clear", env={"ANALYSIS_LOG_DIR": str(logs)})
    assert done.returncode == 0 and "Deleted 50 problem log(s)" in done.stdout
    assert credentials.problem_logs() == []


# ----------------------------------------------------------------------------- 5. YAML
def _alias_bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("kind", ["batch", "params", "grid", "mapping", "calibration"])
def test_a_yaml_file_of_nested_aliases_is_refused_at_once(tmp_path, kind):
    """Attack 5: a 1 KB YAML file of nested aliases (ten levels of nine, ~3.5 billion
    leaves) hung `batch`; every YAML reader now refuses aliases, naming the file."""
    from analysis.batch import load_batch
    from analysis.importer import _load_mapping
    from analysis.params import read_params_file
    from analysis.sensitivity import load_grid
    from analysis.synth import load_calibration

    f = tmp_path / f"{kind}.yaml"
    f.write_text(_alias_bomb())
    assert f.stat().st_size < 1200
    read = {
        "batch": load_batch,
        "params": read_params_file,
        "grid": load_grid,
        "mapping": _load_mapping,
        "calibration": load_calibration,
    }[kind]
    t = time.perf_counter()
    with pytest.raises(AnalysisError, match="aliases") as exc:
        read(f)
    assert str(f) in str(exc.value) and time.perf_counter() - t < 5


def test_yaml_too_deep_or_too_large_is_refused(tmp_path):
    from analysis.inputs import MAX_YAML_BYTES, parse_yaml, read_yaml

    with pytest.raises(AnalysisError, match="nested more than"):
        parse_yaml("x: " + "[" * 50 + "]" * 50, "deep.yaml")
    big = tmp_path / "big.yaml"
    big.write_text("x: " + "a" * (MAX_YAML_BYTES + 1))
    with pytest.raises(AnalysisError, match="larger than"):
        read_yaml(big, "Batch file")


def test_set_values_go_through_the_same_reader():
    from analysis.cli import _overrides

    assert _overrides(["elderly_age=80"]) == {"elderly_age": 80}
    with pytest.raises(AnalysisError, match="aliases"):
        _overrides(["pain_sites=[&a hip, *a]"])


# ----------------------------------------------------------------------------- 6. names
@pytest.mark.parametrize("name", ["paper\n", "paper\x00", "../paper", "pa/per", ""])
def test_names_are_matched_whole(name):
    from analysis.new_notebook import NAME
    from analysis.outputs import safe_name
    from analysis.outputs.registry import NAME as TABLE_NAME

    with pytest.raises(AnalysisError, match="not a safe name"):
        safe_name(name, "Scenario name")
    assert not NAME.fullmatch(name.replace("paper", "07_paper"))
    assert not TABLE_NAME.fullmatch(name)


def test_a_scenario_name_with_a_trailing_newline_is_refused(tmp_path):
    from analysis.batch import load_batch

    f = tmp_path / "b.yaml"
    f.write_text('name: b\nscenarios:\n  "paper\\n": {}\n')
    with pytest.raises(AnalysisError, match="not a safe name"):
        load_batch(f, reports=tmp_path / "reports")


# ----------------------------------------------------------------------------- 7. combine
def _site(
    root: Path,
    name: str,
    counts: dict,
    *,
    synthetic=False,
    disclosure="opensafely",
    scenario="default",
    overrides=None,
):
    """A site's report folder as a batch writes it: one practices run with its released
    counts (practice -> (population, pain, target)) and its manifest."""
    from analysis.outputs.disclosure import release_status
    from analysis.params import Params
    from analysis.results import COLUMNS

    params = Params.from_mapping({"disclosure": disclosure, **(overrides or {})})
    run = root / name / f"{scenario}-07_practices"
    run.mkdir(parents=True)
    with (run / "results.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for pid, values in counts.items():
            for var, v in zip(("population.n", "pain.n", "target.n"), values, strict=True):
                w.writerow(
                    {"run": run.name, "group": "practice", "stratum": pid, "variable": var,
                     "estimate": "count", "value": v, "disclosure": "released"}
                )  # fmt: skip
    (run / "manifest.json").write_text(
        json.dumps(
            {
                "status": "ok",
                "notebook": "07_practices",
                "scenario": scenario,
                "data_source": "default",
                "data_is_synthetic": synthetic,
                "release": release_status(params, synthetic),
                "resolved_parameters": params.to_dict(),
            }
        )
    )
    return root / name


def test_combine_refuses_a_site_not_for_release_whatever_the_order(tmp_path):
    """Attack 7: a site run with disclosure off had its exact counts of 5 and 6 published
    when listed first. Each site's manifests now say its rule; a site NOT FOR RELEASE is
    refused by name, whichever its place."""
    from analysis.results import combine

    off = _site(tmp_path, "surgery_a", {"P1": (400, 120, 5), "P2": (300, 90, 6)}, disclosure="off")
    ok = _site(tmp_path, "surgery_b", {"P3": (500, 150, 40), "P4": (450, 130, 35)})
    for folders in ([off, ok], [ok, off]):
        with pytest.raises(AnalysisError, match="surgery_a .its manifests say NOT FOR RELEASE"):
            combine(folders, tmp_path / "net")
        assert not (tmp_path / "net").exists()
    # with the explicit flag, the strictest rule applies and every file is stamped
    out = {}
    for i, folders in enumerate(([off, ok], [ok, off])):
        combine(folders, tmp_path / f"net{i}", not_for_release=True)
        out[i] = {p.name: p.read_bytes() for p in (tmp_path / f"net{i}").glob("*.csv")}
    assert out[0] == out[1]  # the same files, whatever the order
    practices = (tmp_path / "net0" / "practices.csv").read_text()
    rows = list(csv.DictReader(practices.splitlines()))
    assert {r["release"] for r in rows} == {"NOT FOR RELEASE"}
    released = {r["practice_id"]: r["target_n"] for r in rows}
    assert "surgery_a/P1" not in released or released["surgery_a/P1"] == ""  # 5 < 8: withheld
    assert released["surgery_b/P3"] == "40"
    index = (tmp_path / "net0" / "index.html").read_text()
    assert "NOT FOR RELEASE" in index and "nan" not in index


def test_combine_applies_the_strictest_rule_of_its_sites(tmp_path):
    from analysis.results import combine

    a = _site(tmp_path, "a", {"P1": (400, 120, 6), "P2": (300, 90, 41)}, disclosure="ohdsi")
    b = _site(tmp_path, "b", {"P3": (500, 150, 40), "P4": (450, 130, 35)})
    with pytest.raises(AnalysisError, match=r"a \(released under ohdsi rule"):
        combine([a, b], tmp_path / "net")  # ohdsi is weaker than the network's opensafely
    out = combine([a, b], tmp_path / "net", rule_name="ohdsi")
    rows = list(csv.DictReader((tmp_path / "net" / "practices.csv").read_text().splitlines()))
    got = {r["practice_id"]: r["target_n"] for r in rows}
    # opensafely (site b) is the strictest: 6 withheld, 41 rounded to 40
    assert "a/P1" not in got and got["a/P2"] == "40"
    assert out["left_out_by_site"] == {"a": 1, "b": 0} and not out["not_for_release"]


# ----------------------------------------------------------------------------- properties
TEXT = st.text(alphabet=st.sampled_from(list("ab'\";\\ \n\t\x00/.-_ü$%*&?{}[]()#:,")), max_size=30)


@given(TEXT)
def test_any_name_is_either_refused_or_a_plain_file_name(text):
    from analysis.outputs import safe_name

    try:
        out = safe_name(text, "Name")
    except AnalysisError:
        return
    assert out == text and "/" not in out and "\n" not in out and "\x00" not in out
    assert not out.startswith(".")


@given(TEXT)
@settings(max_examples=200)
def test_any_text_reaches_sql_as_a_value_never_as_sql(text):
    import duckdb

    from analysis.engines import sql_identifier, sql_literal

    con = duckdb.connect()
    if "\x00" in text:
        with pytest.raises(AnalysisError):
            sql_literal(text)
        return
    assert con.execute(f"SELECT {sql_literal(text)}").fetchone()[0] == text
    if text:
        cur = con.execute(f"SELECT 1 AS {sql_identifier(text)}")
        assert cur.description[0][0] == text


@given(st.dictionaries(TEXT, st.one_of(TEXT, st.integers(), st.none()), max_size=4))
def test_any_csv_options_are_refused_or_typed(opts):
    from analysis.importer import csv_options

    try:
        out = csv_options(opts, Path("x.csv"))
    except AnalysisError:
        return
    assert set(opts) <= {"delimiter", "quote", "encoding"}
    assert len(out["quote"]) == 1 and len(out.get("delimiter", ",")) == 1


@given(st.dictionaries(TEXT, st.one_of(TEXT, st.integers(), st.floats(), st.none()), max_size=4))
def test_any_parameters_reach_papermill_only_as_declared_names(params):
    from analysis.batch.checked import PARAMETER_NAME, papermill_parameters
    from analysis.notebook import RUN_PARAMETERS
    from analysis.params import Params

    try:
        out = papermill_parameters(params, source="t")
    except AnalysisError:
        return
    for name in out:
        assert PARAMETER_NAME.fullmatch(name) and name in set(Params.names()) | set(RUN_PARAMETERS)


YAML_TEXT = st.text(alphabet=st.sampled_from(list("ab:-&*[]{}'\"\n !|>x1,")), max_size=60)


@given(YAML_TEXT)
def test_any_yaml_is_parsed_or_refused_with_a_message(text):
    from analysis.inputs import parse_yaml

    try:
        parse_yaml(text, "f.yaml")
    except AnalysisError as exc:
        assert "f.yaml" in str(exc)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    folder=st.text(alphabet=st.sampled_from(list("ab'\"; ü$-_")), min_size=1, max_size=12),
    delimiter=st.sampled_from([";", "'", '"', "\\", "\t", "|", "';--", "\n"]),
    sheet=st.sampled_from(["Foglio1", "Sheet' 1", "x;y", 0, 7]),
)
def test_any_mapping_imports_or_is_refused_and_writes_only_its_folder(
    tmp_path_factory, folder, delimiter, sheet
):
    """Names, paths, delimiters and sheets with quotes, semicolons, newlines and non-ASCII
    letters: the import succeeds, treating them as data, or is refused with a message; no
    file appears outside its destination."""
    import yaml

    base = tmp_path_factory.mktemp("prop")
    home = base / folder.strip().replace("/", "_").lstrip(".") if folder.strip(" .") else base / "x"
    mapping = _example(home / "import")
    m = yaml.safe_load(mapping.read_text())
    m["tables"]["patients"]["csv"] = {"delimiter": delimiter}
    m["tables"]["diagnoses"]["sheet"] = sheet
    mapping.write_text(yaml.safe_dump(m))
    before = snapshot(base)
    done = run_cli("import", "--mapping", mapping, "--into", home / "out", cwd=home)
    after = snapshot(base)
    new = {k for k in after if k not in before}
    assert all(Path(k).is_relative_to(home / "out") for k in new), new
    assert {k: v for k, v in after.items() if k in before} == before
    if done.returncode != 0:
        assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_combine_pools_the_scenario_asked_for_at_every_site(tmp_path):
    """Issue 25: combine took the parameters of the first site's alphabetically first
    results.csv (a scenario `aa_elderly_65`) and refused a site with a false claim. The run
    of each site is now chosen: by default the one with the paper's definitions, else
    --scenario, said on every output."""
    from analysis.results import combine

    a = tmp_path / "sites"
    _site(a, "surgery_a", {"P1": (400, 120, 40)}, synthetic=True, disclosure="off")
    _site(a, "surgery_a_65", {"P1": (400, 120, 90)}, synthetic=True, disclosure="off",
          scenario="aa_elderly_65", overrides={"elderly_age": 65})  # fmt: skip
    # one site folder holding both scenarios' runs
    shutil.move(str(a / "surgery_a_65" / "aa_elderly_65-07_practices"), str(a / "surgery_a"))
    _site(a, "surgery_b", {"P2": (500, 150, 45)}, synthetic=True, disclosure="off")
    out = combine([a / "surgery_b", a / "surgery_a"], tmp_path / "net")
    assert out["scenario"] == ["default"] and out["units"] == 2
    rows = list(csv.DictReader((tmp_path / "net" / "practices.csv").read_text().splitlines()))
    assert {r["practice_id"]: r["target_n"] for r in rows} == {
        "surgery_a/P1": "40",
        "surgery_b/P2": "45",
    }
    pooled = (tmp_path / "net" / "practices_pooled.csv").read_text()
    assert "default" in pooled and "nan" not in (tmp_path / "net" / "index.html").read_text()
    with pytest.raises(AnalysisError, match="Site surgery_b: no run of scenario 'aa_elderly_65'"):
        combine([a / "surgery_a", a / "surgery_b"], tmp_path / "net2", scenario="aa_elderly_65")
