"""Open a database in the contract and validate it before anything is computed.

The tables are exposed as DuckDB views (``patients``, ``diagnoses``, ``pain_episodes``,
``prescriptions``) over the files, so that counting happens in the engine and only
aggregates reach pandas. Validation runs as one SQL pass per table and collects every
problem (file, column, row, expected value) into a single :class:`AnalysisError`.

Modules by concern: :mod:`.database` (open, attach, typed views, "is it synthetic?"),
:mod:`.validate` (the contract's checks), :mod:`.digests` (content digests and the cache).
"""

from analysis.data.database import (
    METADATA_FILE,
    Database,
    is_marked_synthetic,
    is_synthetic,
    marked_synthetic,
    open_database,
)
from analysis.data.digests import remembered_digests, sha256_files
from analysis.data.validate import (
    _INT_TYPES,
    MAX_LISTED_PROBLEMS,
    _column_check,
    _column_types,
    validate_database,
)

__all__ = [
    "MAX_LISTED_PROBLEMS",
    "METADATA_FILE",
    "Database",
    "_INT_TYPES",
    "_column_check",
    "_column_types",
    "is_marked_synthetic",
    "is_synthetic",
    "marked_synthetic",
    "open_database",
    "remembered_digests",
    "sha256_files",
    "validate_database",
]
