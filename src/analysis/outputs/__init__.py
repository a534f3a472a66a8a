"""What leaves a run: declared tables, disclosure control, the release sheet.

Every table is saved through :func:`save_table`, the one step that looks it up in the
registry (:mod:`analysis.outputs.registry`; undeclared or mismatched tables are refused),
protects it under the disclosure rule (:mod:`analysis.outputs.disclosure`) and writes it
atomically. Figures are drawn from the tables this step returns: the plotting functions
refuse a table that has not passed it (:func:`require_released`).
"""

from __future__ import annotations

import re
from pathlib import Path

from analysis.errors import AnalysisError
from analysis.files import atomic_write, atomic_write_text, inside
from analysis.outputs import tables  # noqa: F401  (declares the project's tables)
from analysis.outputs.disclosure import Protected, protect
from analysis.outputs.registry import declare_table, spec_for

__all__ = [
    "declare_table",
    "protect",
    "save_table",
    "spec_for",
    "write_csv",
    "require_released",
    "safe_name",
    "inside",
    "atomic_write",
    "atomic_write_text",
]

RELEASED = "released_as"
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
"""A name that becomes a file or folder name; always matched whole (``fullmatch``)."""


def safe_name(name, what: str) -> str:
    """``name`` when it is letters, digits, ``-`` and ``_`` (it becomes a file or folder
    name); refused otherwise, without echoing more than its first characters."""
    text = str(name)
    if not SAFE_NAME.fullmatch(text):
        shown = text[:40].encode("unicode_escape").decode("ascii")
        raise AnalysisError(
            f"{what} {shown!r} is not a safe name: use letters, digits, - and _ "
            "(it becomes a folder or file name)."
        )
    return text


def save_table(df, name: str, folder: Path, rule, params=None, auditor=None) -> Protected:
    """Protect ``df`` as the declared table ``name`` and write ``folder/tables/<name>.csv``
    atomically; returns the protected table (marked as released, for the figures). With an
    ``auditor`` (:class:`analysis.outputs.auditor.RunAuditor`), the table is audited with
    everything the run released before it, and withheld further where that finds a
    quantity unprotected, before anything is written."""
    if auditor is not None and rule is not None:
        released = auditor.release(
            df, name, lambda force: protect(df, name, rule, params, force=force)
        )
    else:
        released = protect(df, name, rule, params)
    released.table.attrs[RELEASED] = name
    write_csv(released.table, inside(folder, Path(folder) / "tables" / f"{name}.csv"))
    return released


def require_released(df, what: str = "a figure"):
    """Refuse to draw from a table that has not passed the disclosure step."""
    if RELEASED not in getattr(df, "attrs", {}):
        raise AnalysisError(
            f"{what} must be drawn from a table returned by run.save_table(...) (the "
            "disclosure step), not from an unprotected one."
        )
    return df


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _defused(df):
    """Text cells that a spreadsheet would run as a formula (``=HYPERLINK(...)`` as a
    diagnosis code) are written with a leading apostrophe (OWASP's CSV-injection advice);
    numbers, signed ones and text such as "+0.00" included, are untouched."""
    out = None
    for c in df.columns:
        if df[c].dtype != object:
            continue
        bad = df[c].map(
            lambda v: isinstance(v, str) and v.startswith(FORMULA_START) and not _number(v)
        )
        if bad.any():
            out = df.copy() if out is None else out
            out[c] = df[c].where(~bad, "'" + df[c].astype(str))
    return df if out is None else out


def write_csv(df, target: Path) -> Path:
    """Write a table atomically with a fixed float format (byte-identical reruns); text
    that a spreadsheet would run as a formula is defused (:func:`_defused`)."""
    return atomic_write(
        target,
        lambda tmp: _defused(df).to_csv(
            tmp, index=False, float_format="%.10g", lineterminator="\n"
        ),
    )
