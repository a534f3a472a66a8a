"""Reproducible re-analysis of the Mammucari et al. (2016) primary-care cohort.

Data flow: ``data`` (load, validate) -> ``cohort`` (flags, attrition) -> ``statistics`` /
``eligibility`` (estimates with intervals) -> notebooks -> batch -> reports.

Heavy dependencies (statsmodels, matplotlib, scipy) are imported where they are used, so
that ``import analysis`` stays cheap for every notebook kernel and command.
"""

__version__ = "0.1.0"

from analysis.errors import AnalysisError  # noqa: E402

__all__ = ["AnalysisError", "__version__"]
