"""Validation of a database against the contract: one SQL pass per table (or the faster routes of
:mod:`analysis.data.validate_fast` on typed Parquet), every problem collected into one error."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from analysis.contract import DATE_FORMATS, SCHEMA, TABLES, Column
from analysis.data import validate_fast
from analysis.engines import sql_literal as _sql_str
from analysis.errors import AnalysisError

MAX_LISTED_PROBLEMS = 20


# --------------------------------------------------------------------------- validation
_TEXT_TYPES = ("VARCHAR",)


_DATE_TYPES = (
    "DATE",
    "TIMESTAMP",
    "TIMESTAMP WITH TIME ZONE",
    "TIMESTAMP_NS",
    "TIMESTAMP_MS",
    "TIMESTAMP_S",
)


_INT_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
)


def _column_check(col: Column, col_type: str) -> str:
    """SQL predicate that is TRUE for a bad value of ``col`` stored as ``col_type``.

    Typed columns (Parquet, DuckDB) need only the cheap checks their type leaves open;
    text columns (CSV) are parsed with TRY_CAST."""
    c = f'"{col.name}"'
    is_text = col_type in _TEXT_TYPES
    txt = f"CAST({c} AS VARCHAR)"
    empty = f"({c} IS NULL OR trim({c}) = '')" if is_text else f"({c} IS NULL)"
    if col.kind in ("id", "text"):
        return empty
    if col.kind == "vocab":
        vocab = ", ".join(_sql_str(v) for v in col.vocabulary)
        return f"({empty} OR {txt} NOT IN ({vocab}))"
    if col.kind == "integer":
        if col_type in _INT_TYPES:
            return f"({c} IS NULL OR {c} < {col.low} OR {c} > {col.high})"
        num = f"TRY_CAST({txt} AS DOUBLE)"
        return (
            f"({empty} OR {num} IS NULL OR {num} <> floor({num}) "
            f"OR {num} < {col.low} OR {num} > {col.high})"
        )
    if col.kind == "date":
        if col_type in _DATE_TYPES:
            return f"({c} IS NULL)"
        return f"({empty} OR TRY_CAST({txt} AS DATE) IS NULL)"
    if col.kind == "optional_date":
        if col_type in _DATE_TYPES:
            return "FALSE"
        return f"(NOT {empty} AND TRY_CAST({txt} AS DATE) IS NULL)"
    raise ValueError(col.kind)


def _column_types(db, table: str) -> dict[str, str]:
    if table in db.column_types:
        return db.column_types[table]
    return {r[0]: r[1] for r in db.con.execute(f"DESCRIBE raw_{table}").fetchall()}


def validate_database(db, *, today: dt.date | None = None, fast: bool = True) -> None:
    """Check every table against the contract; raise one error listing every problem.

    Refused: missing or unparseable values, values outside their vocabulary or range,
    duplicate ``patient_id``, events of unknown patients, events before the patient's
    birth, events or births after the extract date (``dataset.json``: ``extract_date``)
    or after today. Events after the analysis index date are *not* refused: the
    definitions ignore them.

    Cost: one scan per table counting every kind of problem at once, and one join of the
    event tables with ``patients``; rows are listed only when a count is not zero. With
    ``fast`` (the default), :mod:`analysis.data.validate_fast` answers what Parquet statistics
    settle without a scan and does the join as an array lookup where the ids allow; the
    counts are the same either way.
    """
    today = today or dt.date.today()
    ceiling = today
    if db.metadata.get("extract_date"):
        ceiling = min(ceiling, dt.date.fromisoformat(str(db.metadata["extract_date"])))
    stats = {t: {} for t in TABLES}
    if fast:
        for table, path in db.files.items():
            if table in stats and Path(path).suffix == ".parquet":
                stats[table] = validate_fast.parquet_column_stats(path)
    problems: list[str] = []
    counts = _column_problems(db, stats, fast, problems)
    # relational checks run as well (on values that parse), so one run lists every problem
    all_types = {t: _column_types(db, t) for t in TABLES}
    lookup = None
    if fast and db.con.fast_routes:
        lookup = validate_fast.event_checks(
            db.con, all_types, TABLES[1:], ceiling, db.files, patient_stats=stats["patients"]
        )
    birth = _as_date(all_types["patients"], "birth_date")
    counts += _patient_problems(db, all_types["patients"], stats["patients"], lookup, ceiling,
                                problems)  # fmt: skip
    counts += _event_problems(db, all_types, lookup, ceiling, birth, problems)
    if counts:
        _raise(problems, counts)


def _as_date(types: dict, column: str) -> str:
    """SQL for ``column`` as a date: itself where typed, else its text cast (None where it
    does not parse)."""
    if types.get(column) in _DATE_TYPES:
        return column
    if column == "registered_to":
        return "TRY_CAST(CAST(registered_to AS VARCHAR) AS DATE)"
    return f"TRY_CAST({column} AS DATE)"


def _column_problems(db, stats: dict, fast: bool, problems: list) -> int:
    """Each column's values against its declaration (type, vocabulary, range), one scan a
    table; the rows of each kind of problem listed (at most ``MAX_LISTED_PROBLEMS``) into
    ``problems``. Returns the number of problem values."""
    counts = 0
    for table in TABLES:
        where = db.files.get(table, db.location)
        types = _column_types(db, table)
        checks = []
        for col in SCHEMA[table]:
            col_type = types.get(col.name, "VARCHAR")
            if fast and (
                validate_fast.settled_by_stats(col, col_type, stats[table].get(col.name))
                or _vocabulary_settled(db, table, col)
            ):
                continue
            checks.append((col, _column_check(col, col_type)))
        checks = [(col, pred) for col, pred in checks if pred != "FALSE"]
        if not checks:
            continue
        select = ", ".join(f"count(*) FILTER (WHERE {pred})" for _, pred in checks)
        n_bad = db.con.execute(f"SELECT {select} FROM src_{table}").fetchone()
        for (col, pred), n in zip(checks, n_bad, strict=True):
            if not n:
                continue
            counts += n
            rows = db.con.execute(
                f'SELECT __row, CAST("{col.name}" AS VARCHAR) FROM raw_{table} WHERE {pred} '
                f"ORDER BY __row LIMIT {MAX_LISTED_PROBLEMS}"
            ).fetchall()
            problems.extend(_problem(where, table, col.name, r, v, col.expected) for r, v in rows)
    return counts


def _patient_problems(db, pt: dict, ps: dict, lookup, ceiling, problems: list) -> int:
    """The patients table as a whole: duplicate ids, births after the extract date (or
    today), registrations that end before they start. ``pt``: its column types; ``ps``: its
    Parquet statistics (what they settle is not asked)."""
    counts = 0
    pfile = db.files.get("patients", db.location)
    birth, reg_from = _as_date(pt, "birth_date"), _as_date(pt, "registered_from")
    reg_to = _as_date(pt, "registered_to")
    latest_birth = (
        validate_fast.latest(ps.get("birth_date")) if pt.get("birth_date") == "DATE" else None
    )
    reg_settled = (
        pt.get("registered_from") == "DATE"
        and pt.get("registered_to") == "DATE"
        and _registration_settled(ps.get("registered_from"), ps.get("registered_to"))
    )
    wanted = {
        "dup": None
        if lookup
        else (
            "count(*) - (SELECT count(*) FROM (SELECT patient_id FROM src_patients "
            "WHERE patient_id IS NOT NULL GROUP BY patient_id) AS ids)"
        ),
        "birth": None
        if latest_birth and latest_birth <= ceiling
        else f"count(*) FILTER (WHERE {birth} > DATE '{ceiling}')",
        "reg": None if reg_settled else f"count(*) FILTER (WHERE {reg_to} < {reg_from})",
    }
    asked = {k: v for k, v in wanted.items() if v}
    got = (
        dict(
            zip(
                asked,
                db.con.execute(f"SELECT {', '.join(asked.values())} FROM src_patients").fetchone(),
                strict=True,
            )
        )
        if asked
        else {}
    )
    n_dup = lookup.duplicates if lookup else got.get("dup", 0)
    n_birth, n_reg = got.get("birth", 0), got.get("reg", 0)
    if n_dup:
        q = (
            "SELECT __row, CAST(patient_id AS VARCHAR) FROM raw_patients WHERE patient_id IN "
            "(SELECT patient_id FROM raw_patients GROUP BY patient_id HAVING count(*) > 1) "
            f"ORDER BY __row LIMIT {MAX_LISTED_PROBLEMS}"
        )
        dup_rows = db.con.execute(q).fetchall()
        counts += len(dup_rows) if n_dup < len(dup_rows) else n_dup
        problems.extend(
            _problem(
                pfile, "patients", "patient_id", r, v, "a unique patient_id (this one repeats)"
            )
            for r, v in dup_rows
        )
    if n_birth:
        counts += n_birth
        for r, v in db.con.execute(
            f"SELECT __row, CAST(birth_date AS VARCHAR) FROM raw_patients "
            f"WHERE {birth} > DATE '{ceiling}' ORDER BY 1 LIMIT {MAX_LISTED_PROBLEMS}"
        ).fetchall():
            problems.append(
                _problem(
                    pfile,
                    "patients",
                    "birth_date",
                    r,
                    v,
                    f"a birth date not after {ceiling} (extract date or today)",
                )
            )
    if n_reg:
        counts += n_reg
        for r, v, pid, start in db.con.execute(
            f"SELECT __row, CAST(registered_to AS VARCHAR), CAST(patient_id AS VARCHAR), "
            f"CAST(registered_from AS VARCHAR) FROM raw_patients "
            f"WHERE {reg_to} < {reg_from} ORDER BY 1 LIMIT {MAX_LISTED_PROBLEMS}"
        ).fetchall():
            problems.append(
                _problem(
                    pfile,
                    "patients",
                    "registered_to",
                    r,
                    v,
                    f"a date on or after registered_from ({start}) of patient {pid}",
                )
            )
    return counts


def _event_problems(db, all_types: dict, lookup, ceiling, birth: str, problems: list) -> int:
    """Events of unknown patients, before the patient's birth, after the extract date."""
    counts = 0
    # events: known patient, not before birth, not after the ceiling. One join of the
    # three event tables together against the patients (one hash table, not three), or
    # the array lookup; the per-table queries below run only to list the rows when a
    # count is not zero.
    same_type = len({all_types[t].get("patient_id") for t in TABLES}) == 1
    pid = "patient_id" if same_type else "CAST(patient_id AS VARCHAR)"
    edates = {}
    for table in TABLES[1:]:
        et = all_types[table]
        edates[table] = "date" if et.get("date") in _DATE_TYPES else "TRY_CAST(date AS DATE)"
    if lookup and not lookup.duplicates:
        found = lookup.events
    else:
        union = " UNION ALL ".join(
            f"SELECT {i} AS t, {pid} AS pid, {edates[table]} AS d FROM src_{table}"
            for i, table in enumerate(TABLES[1:])
        )
        per_table = db.con.execute(
            f"SELECT e.t, count(*) FILTER (WHERE p.pid IS NULL AND e.pid IS NOT NULL), "
            f"count(*) FILTER (WHERE e.d < p.birth), count(*) FILTER (WHERE e.d > DATE "
            f"'{ceiling}') "
            f"FROM ({union}) e LEFT JOIN (SELECT {pid} AS pid, {birth} AS birth FROM "
            f"src_patients) p "
            f"ON e.pid = p.pid GROUP BY e.t"
        ).fetchall()
        found = {TABLES[1:][t]: (a, b, c) for t, a, b, c in per_table}
    for table in TABLES[1:]:
        n_unknown, n_before, n_after = found.get(table, (0, 0, 0))
        if not (n_unknown or n_before or n_after):
            continue
        edate = "e." + edates[table] if edates[table] == "date" else "TRY_CAST(e.date AS DATE)"
        joined = (
            f"FROM raw_{table} e LEFT JOIN (SELECT {pid} AS pid, {birth} AS birth FROM "
            f"raw_patients) p "
            f"ON {pid.replace('patient_id', 'e.patient_id')} = p.pid"
        )
        efile = db.files.get(table, db.location)
        for n, pred, col, value, expected in (
            (
                n_unknown,
                "p.pid IS NULL AND e.patient_id IS NOT NULL",
                "patient_id",
                "CAST(e.patient_id AS VARCHAR)",
                "'the patient_id of a patient in the patients table'",
            ),
            (
                n_before,
                f"{edate} < p.birth",
                "date",
                "CAST(e.date AS VARCHAR)",
                "'a date on or after the patient''s birth date ' || CAST(p.birth AS VARCHAR)",
            ),
            (
                n_after,
                f"{edate} > DATE '{ceiling}'",
                "date",
                "CAST(e.date AS VARCHAR)",
                f"'a date not after {ceiling} (extract date or today)'",
            ),
        ):
            if not n:
                continue
            counts += n
            for r, v, exp in db.con.execute(
                f"SELECT e.__row, {value}, {expected} {joined} WHERE {pred} "
                f"ORDER BY 1 LIMIT {MAX_LISTED_PROBLEMS}"
            ).fetchall():
                problems.append(_problem(efile, table, col, r, v, exp))
    return counts


def _vocabulary_settled(db, table: str, col: Column, most: int = 50) -> bool:
    """Whether every value of a vocabulary column is in its vocabulary, from its distinct
    values (a dictionary-encoded column groups faster than a filter scans it)."""
    if col.kind != "vocab":
        return False
    values = db.con.execute(
        f'SELECT "{col.name}" FROM src_{table} GROUP BY "{col.name}" LIMIT {most + 1}'
    ).fetchall()
    return len(values) <= most and all(v[0] in col.vocabulary for v in values)


def _registration_settled(reg_from, reg_to) -> bool:
    """Whether Parquet statistics prove every registered_to on or after registered_from:
    no end date at all, or the earliest end not before the latest start."""
    if reg_to is None or reg_from is None or reg_from.nulls is None or reg_to.nulls is None:
        return False
    if reg_to.high is None and reg_to.low is None:  # no end date in any row
        return True
    earliest_end, latest_start = reg_to.low, validate_fast.latest(reg_from)
    return (
        validate_fast.is_date(earliest_end)
        and latest_start is not None
        and earliest_end >= latest_start
    )


def _problem(where, table, column, row, value, expected) -> str:
    shown = "an empty value" if value is None or str(value).strip() == "" else repr(str(value)[:60])
    return f"{where}: table {table}, column {column}, row {row}: expected {expected}, found {shown}"


def _raise(problems: list[str], total: int) -> None:
    listed = problems[:MAX_LISTED_PROBLEMS]
    more = total - len(listed)
    msg = f"The data do not follow the contract ({total} problem(s)):\n  " + "\n  ".join(listed)
    if more > 0:
        msg += f"\n  ... and {more} more problem(s) not listed."
    hint = _date_format_hint(listed)
    if hint:
        msg += "\n" + hint
    msg += "\nSee data/README.md for the contract."
    raise AnalysisError(msg)


def _date_format_hint(problems: list[str]) -> str:
    """Which format the listed non-ISO dates are in, and how to convert them."""
    import datetime as dt
    import re

    found = [
        m.group(1)
        for p in problems
        if "an ISO date" in p and (m := re.search(r"found '([^']+)'$", p))
    ]
    if not found:
        return ""

    def fits(fmt):
        try:
            return all(dt.datetime.strptime(v, fmt) for v in found)
        except ValueError:
            return False

    ok = [f for f in DATE_FORMATS[1:] if fits(f)]  # the first is ISO
    if not ok:
        return ""
    which = (
        f"the dates read as {ok[0]!r}"
        if len(ok) == 1
        else f"the dates read as {' or '.join(map(repr, ok))} (they cannot tell which)"
    )
    fmt = f'date_format: "{ok[0]}"' if len(ok) == 1 else "the date_format the extract uses"
    return (
        f"Hint: {which}, e.g. {found[0]!r}; the contract wants YYYY-MM-DD. "
        f"`python -m analysis import` converts them with {fmt} in its mapping (README, "
        '"Your own data").'
    )


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
