"""The environment is pinned in one way: pyproject, environment.yml and the lock agree;
the README's quick start is the two commands; notebooks are clean."""

import re
import tomllib

import yaml

from conftest import ROOT


def pins_from_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = meta["dependencies"] + [
        d for extra in meta["optional-dependencies"].values() for d in extra
    ]
    return {d.split("==")[0].split("[")[0]: d.split("==")[1] for d in deps}


def test_environment_yml_names_the_same_packages_at_the_same_versions():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    for d in env["dependencies"]:
        if isinstance(d, str) and "=" in d and not d.startswith("python="):
            name, version = d.split("=", 1)
            conda[name] = version
    # what is not a Python package: Java for Spark
    assert conda.pop("openjdk", "").split(".")[0] == "17"
    assert conda == pins_from_pyproject()
    pip = [d for d in env["dependencies"] if isinstance(d, dict)][0]["pip"]
    assert "-e ." in pip


def test_every_pin_is_in_the_lock_file_at_the_same_version():
    lock = dict(
        re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s]+)", (ROOT / "requirements.lock").read_text(), re.M)
    )
    lock = {k.lower(): v for k, v in lock.items()}
    for name, version in pins_from_pyproject().items():
        assert lock.get(name.lower()) == version, name


def test_readme_quick_start_has_exactly_two_commands():
    text = (ROOT / "README.md").read_text()
    after = text.split("## Quick start", 1)[1]
    block = after.split("```", 2)[1]
    lines = [line for line in block.splitlines()[1:] if line.strip()]
    assert lines == ["make report", "make test"]


def test_ci_calls_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_notebooks_kernel_is_registered_where_it_is_missing(tmp_path, monkeypatch):
    """A conda environment made from environment.yml (an editable install) has no kernel
    named 'analysis': the batch registers it, running the environment's own Python."""
    import json
    import sys

    import jupyter_core.paths as jp

    from analysis.batch.plan import ensure_kernel

    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setattr(jp, "ENV_JUPYTER_PATH", [str(tmp_path / "share" / "jupyter")])
    monkeypatch.setattr(jp, "SYSTEM_JUPYTER_PATH", [])
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("JUPYTER_PATH", "")
    assert ensure_kernel() is True
    spec = json.loads((tmp_path / "share/jupyter/kernels/analysis/kernel.json").read_text())
    assert spec["argv"][:3] == ["python", "-m", "ipykernel_launcher"]
    assert ensure_kernel() is False  # found now: not registered twice


def test_the_core_lock_is_the_locks_core():
    """`make report` installs requirements-core.lock: the packages the core dependencies
    need (no engine extras, no JupyterLab, no test tools), at the lock's versions."""
    import subprocess
    import sys

    from conftest import ROOT

    def pins(name):
        return dict(
            line.split("==", 1)
            for line in (ROOT / name).read_text().splitlines()
            if line and not line.startswith((" ", "#"))
        )

    core, full = pins("requirements-core.lock"), pins("requirements.lock")
    assert core and all(full[k] == v for k, v in core.items())
    for extra in ("pyspark", "psycopg", "sqlglot", "jupyterlab", "pytest", "ruff"):
        assert extra not in core and extra in full
    for needed in ("duckdb", "papermill", "nbconvert", "ipykernel", "statsmodels", "jinja2"):
        assert needed in core
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "core_lock.py"), "--check"])
    assert done.returncode == 0  # up to date with requirements.lock and pyproject
