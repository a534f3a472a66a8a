"""Code lists: prefix matching with dots ignored; unknown names refused."""

import pytest

from analysis.codelists import available_codelists, load_codelist, normalise_code
from analysis.errors import AnalysisError
from analysis.params import RISK_CONDITION_GROUPS, RISK_DRUG_GROUPS


def test_every_risk_group_has_its_list():
    names = set(available_codelists())
    for g in RISK_CONDITION_GROUPS:
        assert f"risk_condition_{g}" in names
    for g in RISK_DRUG_GROUPS:
        assert f"risk_drug_{g}" in names


@pytest.mark.parametrize("code", ["428", "428.0", "4280", "428.22", " 428.9 "])
def test_heart_failure_list_matches_codes_with_or_without_dots(code):
    assert load_codelist("risk_condition_heart_failure").matches(code)


@pytest.mark.parametrize("code", ["429.2", "42", "248.0", "V42.8"])
def test_codes_outside_the_list_do_not_match(code):
    assert not load_codelist("risk_condition_heart_failure").matches(code)


def test_atc_prefix():
    cl = load_codelist("risk_drug_antithrombotics")
    assert cl.matches("B01AC06") and not cl.matches("B03AA07")


def test_normalise():
    assert normalise_code(" 250.00 ") == "25000"
    assert normalise_code("v58.61") == "V5861"


def test_unknown_list_is_refused_with_a_hint():
    with pytest.raises(AnalysisError, match="risk_condition_hypertension"):
        load_codelist("risk_condition_hypertensoin")


def test_every_shipped_list_declares_its_vocabulary():
    from analysis.codelists import available_codelists, load_codelist

    for name in available_codelists():
        v = load_codelist(name).vocabulary
        assert v == ("ATC" if name.startswith("risk_drug_") or name == "nsaids" else "ICD9CM"), name


@pytest.mark.parametrize(
    "text,match",
    [
        ("code,description\n401,x\n", "missing column"),
        ("code,description,vocabulary\n401,x,ICD9CM\n4010,y,SNOMED\n", "one vocabulary per list"),
        ("code,description,vocabulary\n401,x,ICD-9\n", "expected one of"),
    ],
)
def test_a_list_without_one_known_vocabulary_is_refused(tmp_path, text, match):
    from analysis.codelists import load_codelist

    (tmp_path / "mine.csv").write_text(text)
    with pytest.raises(AnalysisError, match=match):
        load_codelist("mine", tmp_path)
