"""The command line's conventions (issue 28): a version, plain help, exit statuses that say
whether the input was refused (1) or the command was mistyped (2), choices declared once."""

from __future__ import annotations

import importlib.metadata
import re

import pytest

from analysis.cli import build_parser
from analysis.errors import AnalysisError
from analysis.inputs import read_yaml_mapping
from analysis.params import CHOICES, Params
from analysis.rules import RULES
from conftest import run_cli

COMMANDS = ["synth", "figures", "sensitivity", "methods", "practices", "combine",
            "new-notebook", "audit", "batch", "import", "load", "logs", "rerun"]  # fmt: skip


def test_version_is_the_one_version_string():
    done = run_cli("--version", check=True)
    assert done.stdout.strip() == f"python -m analysis {importlib.metadata.version('analysis')}"


def test_help_is_plain_text_and_says_the_exit_statuses():
    texts = [run_cli("--help", check=True).stdout]
    texts += [run_cli(c, "--help", check=True).stdout for c in COMMANDS]
    assert len(texts) == 1 + len(COMMANDS)
    for text in texts:
        assert not re.search(r"``|:(mod|func|class|data):`", text), text[:200]
    assert "1 input refused" in texts[0] and "2 a usage error" in texts[0]


def test_refused_input_exits_1_and_a_usage_error_exits_2(tmp_path):
    refused = run_cli("figures", "--set", "ci_method=exactish")
    assert refused.returncode == 1
    assert "ci_method" in refused.stderr and "wilson" in refused.stderr
    assert "Traceback" not in refused.stderr
    mistyped = run_cli("figures", "--no-such-option")
    assert mistyped.returncode == 2 and "unrecognized arguments" in mistyped.stderr
    # import reads one extract: a mapping or an OMOP folder, one of the two (a usage error)
    both = run_cli("import", "--mapping", "m.yaml", "--omop", "x", "--into", tmp_path / "o")
    neither = run_cli("import", "--into", tmp_path / "o")
    assert both.returncode == neither.returncode == 2
    assert "not allowed with" in both.stderr and "one of the arguments" in neither.stderr
    assert not (tmp_path / "o").exists()


def test_each_choice_is_declared_once():
    """The parameter set's Literal types are the choices: validation refuses anything else,
    the command line offers exactly them, and the rule names are those of the rules."""
    assert CHOICES["disclosure"] == ("auto", "off", "opensafely", "ohdsi", "datashield")
    assert set(CHOICES["disclosure"]) == {"auto", "off"} | set(RULES)
    assert CHOICES["pool_method"] == ("dl", "reml", "fixed")
    for name, allowed in CHOICES.items():
        with pytest.raises(AnalysisError, match=f"'{name}' must be one of {', '.join(allowed)}"):
            Params.from_mapping({name: "none_of_these"})
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    offered = [
        a.choices for c in ("figures", "batch", "practices") for a in sub[c]._actions
        if a.dest == "disclosure"
    ]  # fmt: skip
    assert offered == [CHOICES["disclosure"]] * 3


def test_one_reader_for_every_yaml_mapping(tmp_path):
    f = tmp_path / "batch.yaml"
    f.write_text("naem: x\n")
    with pytest.raises(AnalysisError, match=r"unknown key\(s\) 'naem' \(did you mean 'name'\?\)"):
        read_yaml_mapping(f, "Batch file", {"name", "runs"})
    f.write_text("- a\n- b\n")
    with pytest.raises(AnalysisError, match="Batch file .* must hold a mapping"):
        read_yaml_mapping(f, "Batch file")
    f.write_text("data: postgresql://u:secret@host/db\n")
    with pytest.raises(AnalysisError) as e:
        read_yaml_mapping(f, "Batch file")
    assert "secret" not in str(e.value)
    f.write_text("")
    assert read_yaml_mapping(f, "Batch file") == {}
