"""The one parameter set: the paper's definitions by default; bad values refused by name."""

import pytest

from analysis.errors import AnalysisError
from analysis.params import Params, load_params


def test_defaults_are_the_papers_definitions():
    p = Params()
    assert p.index_date == "2015-12-31"
    assert str(p.window_start) == "2006-01-01"  # 10-year look-back, both ends included
    assert p.pain_sites == ("hip", "neck", "back", "knee")
    assert p.min_severity == 4  # moderate or severe on the 0-10 scale
    assert p.pain_causes == ("osteoarticular",)
    assert len(p.risk_conditions) == 7
    assert p.min_episodes == 2 and p.elderly_age == 75
    assert (p.benefit_fraction, p.benefit_low, p.benefit_high, p.benefit_distribution) == (
        0.5,
        0.5,
        1.0,
        "fixed",
    )
    assert p.confidence_level == 0.95 and p.ci_method == "wilson"
    assert p.gp_list_size == 1500


@pytest.mark.parametrize(
    "name,value,fragment",
    [
        ("elderly_age", -5, "elderly_age"),
        ("benefit_fraction", 1.5, "benefit_fraction"),
        ("benefit_low", -0.1, "benefit_low"),
        ("pain_sites", [], "pain_sites"),
        ("pain_sites", ["elbow"], "elbow"),
        ("risk_conditions", ["risk_condition_gout"], "risk_condition_gout"),
        ("ci_method", "wald", "ci_method"),
        ("confidence_level", 1.2, "confidence_level"),
        ("index_date", "31/12/2015", "index_date"),
        ("min_severity", 11, "min_severity"),
    ],
)
def test_invalid_values_are_refused_naming_the_parameter(name, value, fragment):
    with pytest.raises(AnalysisError) as e:
        Params.from_mapping({name: value})
    assert fragment in str(e.value)


def test_wrong_types_are_refused():
    with pytest.raises(AnalysisError, match="elderly_age.*integer"):
        Params.from_mapping({"elderly_age": "old"})


def test_misspelt_parameter_is_refused_with_the_nearest_name():
    with pytest.raises(AnalysisError) as e:
        Params.from_mapping({"elderly_agee": 80})
    assert "elderly_agee" in str(e.value) and "elderly_age" in str(e.value)


def test_yaml_file_and_overrides(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("elderly_age: 80\npain_sites: [back, knee]\n")
    p = load_params(f, {"min_episodes": 3})
    assert p.elderly_age == 80 and p.pain_sites == ("back", "knee") and p.min_episodes == 3
    f.write_text("elderly_agee: 80\n")
    with pytest.raises(AnalysisError, match="did you mean 'elderly_age'"):
        load_params(f)


def test_comma_separated_lists_from_the_command_line():
    assert Params.from_mapping({"pain_sites": "back, knee"}).pain_sites == ("back", "knee")


def test_benefit_fraction_is_a_share():
    """Any share in [0, 1] (0.3 is a pessimistic scenario, as the sensitivity grid has);
    benefit_low..benefit_high is the distributions' range, not the fixed fraction's."""
    assert Params.from_mapping({"benefit_fraction": 0.3}).benefit_fraction == 0.3
    for bad in (1.5, -0.2):
        with pytest.raises(AnalysisError, match="benefit_fraction"):
            Params.from_mapping({"benefit_fraction": bad})


def test_window_start_for_a_29_february_index_date():
    assert str(Params(index_date="2016-02-29", lookback_years=1).window_start) == "2015-03-01"
