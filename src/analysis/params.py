"""The one parameter set of the study, with the paper's definitions as defaults.

Every way in (a notebook's ``parameters`` cell, a batch scenario, a YAML file, the command
line) overrides this one set, field by field; unknown names are refused with the nearest
valid name, so that a typo can never run the default silently.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing
from dataclasses import dataclass, fields
from pathlib import Path

from analysis.codelists import available_codelists
from analysis.contract import (  # noqa: F401  (the vocabularies: the contract's)
    PAIN_CAUSES,
    PAIN_SITES,
)
from analysis.credentials import refuse_passwords_in
from analysis.errors import AnalysisError, nearest_name
from analysis.inputs import read_yaml_mapping

RISK_CONDITION_GROUPS = (
    "cardiovascular_disease",
    "heart_failure",
    "hypertension",
    "renal_impairment",
    "diabetes_mellitus",
    "gastrointestinal_disorders",
    "copd_asthma",
)
RISK_DRUG_GROUPS = ("antithrombotics", "corticosteroids", "ssri")
# Each choice is declared once, as the Literal type of its parameter: validation, the
# command line's choices (:func:`choices`) and the tuples below read it.
Population = typing.Literal["registered_in_window", "registered_on_index_date", "all_patients"]
BenefitDistribution = typing.Literal["uniform", "beta", "fixed"]
CiMethod = typing.Literal["wilson", "clopper_pearson", "agresti_coull", "jeffreys"]
DisclosureRule = typing.Literal["auto", "off", "opensafely", "ohdsi", "datashield"]
PoolMethod = typing.Literal["dl", "reml", "fixed"]
EventsOutsideRegistration = typing.Literal["count", "leave_out"]
CI_METHODS = typing.get_args(CiMethod)
BENEFIT_DISTRIBUTIONS = typing.get_args(BenefitDistribution)
DISCLOSURE_RULES = typing.get_args(DisclosureRule)
POPULATIONS = typing.get_args(Population)
EVENTS_OUTSIDE_REGISTRATION = typing.get_args(EventsOutsideRegistration)
POOL_METHODS = typing.get_args(PoolMethod)


@dataclass(frozen=True)
class Params:
    """Definitions and assumptions of the analysis (defaults: Mammucari et al. 2016).

    Attributes
    ----------
    index_date : ISO date; ages are in completed years on this day, and no event after
        it counts.
    population : who the study counts. ``registered_in_window`` (default; the paper's
        "patients treated in the last 10 years"): registered on or before the index date
        and not deregistered before the window's first day; ``registered_on_index_date``:
        registered on the index date itself; ``all_patients``: every patient of the
        extract (for extracts already restricted). Whatever the choice, a patient born
        after the index date is never in the population, and the events of patients
        outside it never count.
    lookback_years : length of the look-back window in years; the window runs from the
        day after the same date ``lookback_years`` earlier to the index date, both included
        (2006-01-01 to 2015-12-31 by default).
    pain_sites, pain_causes, min_severity : a qualifying pain episode is at one of these
        sites, of one of these causes, with severity at least ``min_severity`` on the 0-10
        numeric rating scale (4 or more = moderate or severe), dated in the window.
    risk_conditions : names of diagnosis code lists (``data/codelists/<name>.csv``); a
        patient has a risk condition with a diagnosis in any of them on or before the index
        date.
    risk_drugs : names of ATC code lists; a risk drug is a prescription in any of them on
        or before the index date.
    min_episodes : recurrence, the least number of qualifying episodes in the window.
    events_outside_registration : ``count`` (default, as the paper's query): a pain episode,
        diagnosis or prescription counts whatever its date against the patient's
        registration; ``leave_out``: only events dated within the patient's registration
        (``registered_from`` to ``registered_to``, open-ended when empty) count.
    elderly_age : elderly = aged at least this many completed years at the index date.
    benefit_fraction, benefit_low, benefit_high, benefit_distribution, benefit_beta_a,
    benefit_beta_b : share of the target subgroup expected to benefit from a local
        treatment (0-1). ``fixed`` (default): the benefit is ``benefit_fraction``, 0.5 as the
        paper's "at least 50%" (so the estimate is a lower bound); ``uniform``: uniform on
        [``benefit_low``, ``benefit_high``] (0.5-1.0 by default: "at least 50%" as a range);
        ``beta``: a Beta(a, b) scaled to that range. See :mod:`analysis.eligibility`.
    confidence_level, ci_method : two-sided level and interval method for proportions.
    disclosure : statistical disclosure rule for outputs (``opensafely``, ``ohdsi``,
        ``datashield``, ``off``); ``auto`` is ``off`` for data marked synthetic and
        ``opensafely`` otherwise.
    disclosure_threshold, disclosure_rounding : when not 0, replace the rule's threshold
        (counts below it are withheld) and rounding base (counts rounded to a multiple).
    gp_list_size : patients on one GP's list, for per-list extrapolation.
    age_band_edges : lower edges (completed years) of the age bands after the first.
    pool_method : how practices' target proportions are pooled (``practices``, notebook
        07): ``dl`` (random effects, DerSimonian-Laird; default), ``reml`` or ``fixed``.
    monte_carlo_draws, seed : no longer used (the eligibility interval is computed exactly,
        without a Monte Carlo); still accepted so that existing scripts run.
    """

    index_date: str = "2015-12-31"
    lookback_years: int = 10
    population: Population = "registered_in_window"
    pain_sites: tuple[str, ...] = ("hip", "neck", "back", "knee")
    pain_causes: tuple[str, ...] = ("osteoarticular",)
    min_severity: int = 4
    risk_conditions: tuple[str, ...] = tuple(f"risk_condition_{g}" for g in RISK_CONDITION_GROUPS)
    risk_drugs: tuple[str, ...] = tuple(f"risk_drug_{g}" for g in RISK_DRUG_GROUPS)
    min_episodes: int = 2
    elderly_age: int = 75
    benefit_fraction: float = 0.5
    benefit_low: float = 0.5
    benefit_high: float = 1.0
    benefit_distribution: BenefitDistribution = "fixed"
    benefit_beta_a: float = 10.0
    benefit_beta_b: float = 10.0
    confidence_level: float = 0.95
    ci_method: CiMethod = "wilson"
    disclosure: DisclosureRule = "auto"
    disclosure_threshold: int = 0
    disclosure_rounding: int = 0
    gp_list_size: int = 1500
    age_band_edges: tuple[int, ...] = (45, 55, 65, 75)
    pool_method: PoolMethod = "dl"
    events_outside_registration: EventsOutsideRegistration = "count"
    monte_carlo_draws: int = 20000
    seed: int = 20160601

    # ------------------------------------------------------------------ derived values
    @property
    def index(self) -> dt.date:
        return dt.date.fromisoformat(self.index_date)

    @property
    def window_start(self) -> dt.date:
        """First day of the look-back window (inclusive)."""
        idx = self.index
        try:
            back = idx.replace(year=idx.year - self.lookback_years)
        except ValueError:  # 29 February -> 28 February
            back = idx.replace(year=idx.year - self.lookback_years, day=28)
        return back + dt.timedelta(days=1)

    def replace(self, **changes) -> Params:
        """A copy with some fields changed (validated like any other input)."""
        merged = self.to_dict()
        merged.update(changes)
        return Params.from_mapping(merged)

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    # ------------------------------------------------------------------ construction
    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_mapping(cls, mapping: dict | None, *, source: str = "parameters") -> Params:
        """Build from a mapping of overrides; unknown names and bad values are refused."""
        mapping = dict(mapping or {})
        check_names(mapping, source=source)
        hints = typing.get_type_hints(cls)
        values = {}
        for name, raw in mapping.items():
            values[name] = _coerce(name, raw, hints[name], source)
        params = cls(**values)
        params.validate(source=source)
        return params

    def validate(self, *, source: str = "parameters") -> None:
        """Refuse values outside their ranges, choices or code lists, every problem at once."""
        problems = []

        def bad(name, msg):
            problems.append(f"{source}: parameter '{name}' {msg}")

        self._definition_problems(bad)
        self._estimation_problems(bad)
        self._codelist_problems(bad)
        if problems:
            raise AnalysisError("Invalid parameters:\n  " + "\n  ".join(problems))

    def _definition_problems(self, bad) -> None:
        """The index date, the choices, the window, pain sites and causes, severity,
        recurrence and the elderly age."""
        try:
            _ = self.index
        except ValueError:
            bad("index_date", f"must be an ISO date like 2015-12-31, got {self.index_date!r}")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                bad(name, f"must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.lookback_years < 1:
            bad("lookback_years", f"must be at least 1 year, got {self.lookback_years}")
        if not self.pain_sites:
            bad("pain_sites", "must name at least one site")
        for s in self.pain_sites:
            if s not in PAIN_SITES:
                bad(
                    "pain_sites", f"has unknown site {s!r}; expected one of {', '.join(PAIN_SITES)}"
                )
        if not self.pain_causes:
            bad("pain_causes", "must name at least one cause")
        for c in self.pain_causes:
            if c not in PAIN_CAUSES:
                bad(
                    "pain_causes",
                    f"has unknown cause {c!r}; expected one of {', '.join(PAIN_CAUSES)}",
                )
        if not 0 <= self.min_severity <= 10:
            bad(
                "min_severity", f"must be 0-10 on the numeric rating scale, got {self.min_severity}"
            )
        if self.min_episodes < 1:
            bad("min_episodes", f"must be at least 1, got {self.min_episodes}")
        if not 0 <= self.elderly_age <= 120:
            bad("elderly_age", f"must be an age in years 0-120, got {self.elderly_age}")

    def _estimation_problems(self, bad) -> None:
        """The benefit share and its distribution, the interval level, the disclosure
        settings, the GP list, the age bands."""
        for name in ("benefit_fraction", "benefit_low", "benefit_high"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                bad(name, f"is a fraction and must be between 0 and 1, got {v}")
        if self.benefit_low > self.benefit_high:
            bad(
                "benefit_low",
                f"must not exceed benefit_high ({self.benefit_low} > {self.benefit_high})",
            )
        # a fixed fraction is any share in [0, 1] (checked above): benefit_low..benefit_high
        # is the range of the distributions only (0.3 is a pessimistic scenario)
        for name in ("benefit_beta_a", "benefit_beta_b"):
            if getattr(self, name) <= 0:
                bad(name, "must be a positive Beta shape parameter")
        if not 0.5 <= self.confidence_level < 1.0:
            bad("confidence_level", f"must be in [0.5, 1), got {self.confidence_level}")
        if self.disclosure_threshold < 0 or self.disclosure_rounding < 0:
            bad(
                "disclosure_threshold",
                "and disclosure_rounding must be 0 (the rule's own) or positive",
            )
        if self.gp_list_size < 1:
            bad("gp_list_size", f"must be a positive number of patients, got {self.gp_list_size}")
        edges = list(self.age_band_edges)
        if edges != sorted(set(edges)) or any(e <= 0 for e in edges):
            bad("age_band_edges", f"must be increasing positive ages, got {edges}")
        if self.monte_carlo_draws < 1000:
            bad("monte_carlo_draws", f"must be at least 1000, got {self.monte_carlo_draws}")

    def _codelist_problems(self, bad) -> None:
        """Every named code list exists; at least one is named."""
        known = available_codelists()
        for name in ("risk_conditions", "risk_drugs"):
            lists = getattr(self, name)
            for cl in lists:
                if cl not in known:
                    hint = nearest_name(cl, known)
                    bad(
                        name,
                        f"names unknown code list {cl!r}"
                        + (f" (did you mean {hint!r}?)" if hint else "")
                        + "; code lists live in data/codelists/",
                    )
        if not self.risk_conditions and not self.risk_drugs:
            bad("risk_conditions", "and risk_drugs are both empty; name at least one code list")


def check_names(mapping: dict, *, source: str = "parameters", allowed_extra=()) -> None:
    """Refuse names that are not parameters, naming the nearest valid one."""
    valid = set(Params.names()) | set(allowed_extra)
    unknown = [k for k in mapping if k not in valid]
    if unknown:
        lines = []
        for k in unknown:
            hint = nearest_name(k, sorted(valid))
            lines.append(
                f"{source}: unknown parameter {k!r}"
                + (f" (did you mean {hint!r}?)" if hint else "")
            )
        raise AnalysisError("\n".join(lines))


def _coerce(name, raw, hint, source):
    if name == "disclosure" and raw is False:
        raw = "off"  # YAML 1.1 (and --set) read the documented value `off` as a boolean
    origin = typing.get_origin(hint)
    try:
        if origin is tuple:
            (inner, _ellipsis) = typing.get_args(hint)
            if isinstance(raw, str):
                raw = [x.strip() for x in raw.split(",") if x.strip()]
            if not isinstance(raw, list | tuple):
                raise TypeError
            return tuple(_coerce_scalar(x, inner) for x in raw)
        return _coerce_scalar(raw, hint)
    except (TypeError, ValueError):
        raise AnalysisError(
            f"{source}: parameter '{name}' expected {_type_name(hint)}, got {raw!r}"
        ) from None


def _coerce_scalar(raw, typ):
    if typing.get_origin(typ) is typing.Literal:  # a choice: text, checked by validate
        typ = str
    if typ is bool:
        raise TypeError
    if typ is int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise TypeError
        return int(raw)
    if typ is float:
        if isinstance(raw, bool):
            raise TypeError
        return float(raw)
    if typ is str:
        if isinstance(raw, dt.date):
            return raw.isoformat()
        if not isinstance(raw, str):
            raise TypeError
        return raw
    raise TypeError


def _type_name(hint) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return f"one of {', '.join(typing.get_args(hint))}"
    if typing.get_origin(hint) is tuple:
        return f"a list of {typing.get_args(hint)[0].__name__}"
    return {int: "an integer", float: "a number", str: "a text value"}.get(hint, str(hint))


def read_params_file(path: str | Path) -> dict:
    """The overrides a YAML parameter file holds (names checked, passwords refused)."""

    path = Path(path)
    loaded = read_yaml_mapping(path, "Parameter file", holds="name: value")
    check_names(loaded, source=str(path))
    return loaded


def load_params(path: str | Path | None = None, overrides: dict | None = None) -> Params:
    """The default parameter set, updated by a YAML file and then by explicit overrides."""
    merged: dict = {}
    if path is not None:
        merged.update(read_params_file(path))
    if overrides:
        refuse_passwords_in(overrides, "A parameter override")
        check_names(overrides, source="overrides")
        merged.update(overrides)
    return Params.from_mapping(merged, source=str(path) if path else "parameters")


DEFAULTS = dataclasses.asdict(Params())


CHOICES: dict[str, tuple[str, ...]] = {
    f.name: typing.get_args(hint)
    for f in fields(Params)
    if typing.get_origin(hint := typing.get_type_hints(Params)[f.name]) is typing.Literal
}
"""Parameter -> its allowed values, read from the parameter set's Literal types (the
command line's ``choices``, validation and the methods text read this)."""
