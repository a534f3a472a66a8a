"""Import a real extract into the data contract, as a mapping file describes it.

``python -m analysis import --mapping FILE.yaml --into FOLDER``. The mapping names, per
contract table, the source file(s) (CSV, Parquet or Excel; paths relative to the mapping
file), which source column feeds each contract column (or a constant), value maps, the
date format and the CSV dialect; and the code system of the diagnoses (ICD-9-CM, or
ICD-10 mapped to ICD-9-CM through ``data/mappings/icd10_to_icd9cm.csv``). Example::

    extract_date: 2016-01-31
    code_system: icd10
    tables:
      patients:
        files: [anagrafica.csv]
        csv: {delimiter: ";", encoding: latin-1}
        columns: {patient_id: ID_PAZ, sex: SESSO, birth_date: DATA_NASCITA,
                  registered_from: DATA_ISCR, registered_to: DATA_REVOCA}
        constants: {practice_id: P01}
        date_format: "%d/%m/%Y"
      diagnoses: {files: [diagnosi.xlsx], columns: {patient_id: ID_PAZ, date: DATA, code: ICD10}}
      ...

Repairs, all counted in ``import_report.json``: sex codings (1/2, M/F, male/female,
maschio/femmina ... to F/M), dates in the given format or common ones, blanks trimmed,
ICD-10 codes mapped (codes without a mapping are left out of ``diagnoses`` and listed with
their counts in ``unmapped_codes.csv``, never dropped silently). A value that cannot be
repaired stops the import with its source file, column and row. The output is written
beside its destination, validated against the contract, and moved into place only then.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from analysis import paths
from analysis.contract import DATE_FORMATS, SCHEMA, SEXES, TABLES
from analysis.data import open_database
from analysis.engines import sql_identifier as _q
from analysis.engines import sql_list
from analysis.engines import sql_literal as _lit
from analysis.errors import AnalysisError, nearest_name
from analysis.files import atomic_write_text
from analysis.folders import publish_folder
from analysis.inputs import read_yaml_mapping

SEX_CODES = {
    "F": "F",
    "FEMALE": "F",
    "FEMMINA": "F",
    "W": "F",
    "WOMAN": "F",
    "2": "F",
    "FEM": "F",
    "M": "M",
    "MALE": "M",
    "MASCHIO": "M",
    "MAN": "M",
    "1": "M",
    "MAS": "M",
}
MAX_LISTED = 20
TABLE_KEYS = {"files", "columns", "constants", "values", "date_format", "csv", "sheet"}


def publish(tmp: Path, into: Path, *, source_hint: str = "") -> None:
    """Validate a finished import by the contract, then move it into place; an existing
    folder is replaced only when every file in it is one this tool wrote, unchanged
    (:mod:`analysis.folders`); nothing of the user's is ever deleted. A validation error names the
    imported tables (not the temporary folder) and
    ends with ``source_hint``, which tells how to find the row in the sources."""

    try:
        open_database(tmp).close()  # the contract's own validation, before anything is kept
    except AnalysisError as exc:
        msg = str(exc).replace(str(tmp) + "/", "imported ")
        raise AnalysisError(msg + (f"\n({source_hint})" if source_hint else "")) from None

    publish_folder(tmp, into, "python -m analysis import")


def map_icd10(
    con, diagnoses_sql: str, out_dir: Path, report: dict, map_path: Path | None = None
) -> str:
    """Map the ICD-10 codes of ``diagnoses_sql`` (patient_id, date, code) to ICD-9-CM by
    the longest prefix in the mapping table; write the codes without a mapping, with their
    record counts, to ``unmapped_codes.csv`` and count them in ``report``; return the SQL
    of the mapped diagnoses (unmapped records are left out, never silently)."""
    map_path = Path(map_path or paths.DATA / "mappings" / "icd10_to_icd9cm.csv")
    with open(map_path, newline="", encoding="utf-8") as fh:
        rows = [(r["icd10"].replace(".", "").upper(), r["icd9cm"]) for r in csv.DictReader(fh)]
    con.execute(
        "CREATE OR REPLACE TEMP TABLE icd_map AS SELECT * FROM (VALUES "
        + ", ".join(f"({_lit(a)}, {_lit(b)})" for a, b in rows)
        + ") t(icd10, icd9)"
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE dx_source AS {diagnoses_sql}")
    # the longest ICD-10 prefix of each distinct code, then a join on equality
    con.execute(
        "CREATE OR REPLACE TEMP TABLE code_map AS SELECT code, arg_max(m.icd9, length(m.icd10)) "
        "AS icd9 "
        "FROM (SELECT DISTINCT code FROM dx_source) c JOIN icd_map m "
        "ON starts_with(upper(replace(trim(code), '.', '')), m.icd10) GROUP BY code"
    )
    unmapped = con.execute(
        "SELECT d.code, count(*) FROM dx_source d LEFT JOIN code_map c USING (code) "
        "WHERE c.icd9 IS NULL GROUP BY 1 ORDER BY 2 DESC, 1"
    ).fetchall()
    with open(out_dir / "unmapped_codes.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["icd10_code", "records"])
        w.writerows(unmapped)
    report["repairs"]["icd10_mapped"] = con.execute(
        "SELECT count(*) FROM dx_source d JOIN code_map c USING (code)"
    ).fetchone()[0]
    report["repairs"]["icd10_unmapped_records"] = int(sum(n for _, n in unmapped))
    report["repairs"]["icd10_unmapped_codes"] = len(unmapped)
    # what the methods say: the mapping file (name and digest) and what it could not map
    report["code_mapping"] = {
        "from": "ICD10",
        "to": "ICD9CM",
        "file": map_path.name,
        "sha256": hashlib.sha256(map_path.read_bytes()).hexdigest(),
        "mapped_records": int(report["repairs"]["icd10_mapped"]),
        "unmapped_records": report["repairs"]["icd10_unmapped_records"],
    }
    return (
        "SELECT d.patient_id, d.date, c.icd9 AS code FROM dx_source d JOIN code_map c USING (code)"
    )


def _load_mapping(path: Path) -> dict:
    allowed = {"extract_date", "code_system", "icd10_map", "tables", "description"}
    m = read_yaml_mapping(path, "Mapping file", allowed, holds="extract_date, tables, ...")
    problems = []
    if m.get("code_system", "icd9cm") not in ("icd9cm", "icd10"):
        problems.append(
            f"{path}: code_system must be icd9cm or icd10, got {m.get('code_system')!r}"
        )
    tables = m.get("tables") or {}
    if not isinstance(tables, dict):
        problems.append(f"{path}: 'tables' must map contract tables to their sources")
        tables = {}
    for t, spec in tables.items():
        if t not in SCHEMA:
            hint = nearest_name(t, TABLES)
            problems.append(
                f"{path}: unknown table {t!r}" + (f" (did you mean {hint!r}?)" if hint else "")
            )
            continue
        if not isinstance(spec, dict) or not spec.get("files"):
            problems.append(f"{path}: tables.{t} needs 'files' (one or more source files)")
            continue
        for k in spec:
            if k not in TABLE_KEYS:
                hint = nearest_name(k, sorted(TABLE_KEYS))
                problems.append(
                    f"{path}: tables.{t}: unknown key {k!r}"
                    + (f" (did you mean {hint!r}?)" if hint else "")
                )
        if "csv" in spec:
            try:
                csv_options(spec["csv"], Path(f"(tables.{t})"))
            except AnalysisError as exc:
                problems.append(f"{path}: tables.{t}: {exc}")
        if "sheet" in spec and (
            isinstance(spec["sheet"], bool) or not isinstance(spec["sheet"], str | int)
        ):
            problems.append(f"{path}: tables.{t}: sheet must be a sheet's name or its number")
        names = {c.name for c in SCHEMA[t]}
        given = set(spec.get("columns") or {}) | set(spec.get("constants") or {})
        for c in given - names:
            hint = nearest_name(c, sorted(names))
            problems.append(
                f"{path}: tables.{t}: {c!r} is not a column of the contract's {t}"
                + (f" (did you mean {hint!r}?)" if hint else "")
            )
        required = names - {"registered_to"}
        for c in sorted(required - given):
            problems.append(f"{path}: tables.{t}: no source column or constant for {c!r}")
    for t in TABLES:
        if t not in tables:
            problems.append(f"{path}: tables.{t} is missing (every contract table needs a source)")
    if m.get("extract_date"):
        try:
            dt.date.fromisoformat(str(m["extract_date"]))
        except ValueError:
            problems.append(f"{path}: extract_date must be an ISO date, got {m['extract_date']!r}")
    if problems:
        raise AnalysisError("The mapping file has errors:\n  " + "\n  ".join(problems))
    return m


CSV_OPTIONS = {
    "delimiter": "one character that separates the columns (default ',', a tab for .tsv)",
    "quote": "one character that quotes a value (default '\"')",
    "encoding": "the file's text encoding, e.g. latin-1 (default utf-8)",
}
"""The options a mapping's ``csv:`` may give, each with what it takes; any other is refused."""


def csv_options(given, path: Path) -> dict:
    """A mapping's ``csv:`` options for ``path``, checked against :data:`CSV_OPTIONS`
    (typed values; an unknown option is refused by name, the nearest named)."""
    import codecs

    given = {} if given is None else given
    where = f"Mapping for source file {path}: csv"
    if not isinstance(given, dict):
        raise AnalysisError(f"{where} must be a mapping of option: value.")
    problems = []
    for k in given:
        if k not in CSV_OPTIONS:
            hint = nearest_name(str(k), sorted(CSV_OPTIONS))
            problems.append(
                f"{where}: unknown option {str(k)[:40]!r}"
                + (f" (did you mean {hint!r}?)" if hint else "")
                + f"; the options are {', '.join(CSV_OPTIONS)}"
            )
    out = {"quote": '"', "encoding": "utf-8"}
    for k in ("delimiter", "quote"):
        if k in given:
            v = given[k]
            if not isinstance(v, str) or len(v) != 1 or v in "\r\n\x00":
                problems.append(f"{where}.{k}: expected {CSV_OPTIONS[k]}, got {str(v)[:40]!r}")
            else:
                out[k] = v
    if "encoding" in given:
        v = given["encoding"]
        try:
            if not isinstance(v, str):
                raise LookupError(v)
            out["encoding"] = codecs.lookup(v).name.replace("_", "-")
        except LookupError:
            problems.append(
                f"{where}.encoding: expected {CSV_OPTIONS['encoding']}, got {str(v)[:40]!r}"
            )
    if out.get("delimiter") == out["quote"]:
        problems.append(f"{where}: the delimiter and the quote must differ")
    if problems:
        raise AnalysisError("\n".join(problems))
    return out


def _read_source(con, path: Path, spec: dict, view: str) -> None:
    """Register a source file as a DuckDB view of text columns with a row number."""
    if not path.exists():
        raise AnalysisError(f"Source file {path} does not exist.")
    if path.stat().st_size == 0:
        raise AnalysisError(f"Source file {path} is empty.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".txt", ".tsv"):
            opts = csv_options(spec.get("csv"), path)
            enc = opts["encoding"]
            src = path
            if enc not in ("utf-8", "utf8"):
                # a UTF-8 copy inside the import's own temporary folder (removed with it)
                src = Path(spec["_workdir"]) / f"{view}-{path.name}"
                src.write_text(path.read_text(encoding=enc), encoding="utf-8")
                src.chmod(0o600)
            else:
                try:
                    path.read_bytes().decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise AnalysisError(
                        f"Source file {path} is not UTF-8 (byte {exc.start}); set "
                        f"csv: {{encoding: latin-1}} (or its encoding) in the mapping."
                    ) from None
            delim = opts.get("delimiter", "\t" if suffix == ".tsv" else ",")
            rel = (
                f"read_csv({_lit(src)}, header=true, all_varchar=true, delim={_lit(delim)}, "
                f"quote={_lit(opts['quote'])}, strict_mode=true, max_line_size=10000000)"
            )
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT *, row_number() OVER () AS __row "
                f"FROM {rel}"
            )
        elif suffix == ".parquet":
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * EXCLUDE (file_row_number), "
                "file_row_number + 1 AS __row FROM "
                f"read_parquet({_lit(path)}, file_row_number=true)"
            )
        elif suffix in (".xlsx", ".xlsm"):
            import pandas as pd

            sheet = spec.get("sheet", 0)
            with pd.ExcelFile(path) as book:
                names = [str(n) for n in book.sheet_names]
                if (isinstance(sheet, str) and sheet not in names) or (
                    isinstance(sheet, int) and not 0 <= sheet < len(names)
                ):
                    raise AnalysisError(
                        f"Source file {path}: no sheet {sheet!r} (sheet: a name, or a number "
                        f"from 0); its sheets: {', '.join(map(repr, names))}."
                    )
                df = pd.read_excel(book, sheet_name=sheet, dtype=object)
            df = df.map(_excel_text).astype(object)
            df["__row"] = range(1, len(df) + 1)
            con.register(f"{view}_df", df)
            con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {view}_df")
        else:
            raise AnalysisError(
                f"Source file {path}: unsupported format {suffix!r} (CSV, Parquet or Excel)."
            )
        con.execute(f"SELECT count(*) FROM {view}").fetchone()
    except AnalysisError:
        raise
    except Exception as exc:  # duckdb / openpyxl errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AnalysisError(f"Source file {path} could not be read: {first}") from None


def _excel_text(v):
    """An Excel cell as text: a native date cell as an ISO date (with its time when it has
    one), a whole number without ".0", an empty cell as None."""
    import math

    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, dt.datetime):
        return v.date().isoformat() if v.time() == dt.time(0) else v.isoformat(sep=" ")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


# formats accepted besides the mapping's date_format in an Excel source: native date cells
# are read as ISO dates, with a time of day when they have one
ISO_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S")


def _coding_report(con, table: str, raw: str, read: str, where: str | None = None) -> list[dict]:
    """How the values of one source column were read: source value -> contract value, with
    the number of rows (the 20 most frequent source values; empty values not counted)."""
    rows = con.execute(
        f"SELECT {raw} AS s, {read} AS r, count(*) AS n FROM raw_{table} "
        f"WHERE {where or raw} IS NOT NULL GROUP BY ALL ORDER BY n DESC, s LIMIT 20"
    ).fetchall()
    return [{"source": s, "read_as": r, "rows": int(n)} for s, r, n in rows]


def _date_formats(con, table: str, column: str, expr: str, excel: bool, src_col: str):
    """The one format a date column is read with, chosen from the values themselves:
    ``(formats, problem)``. A format that reads every non-empty value is the column's;
    where two read every value but give different dates (05/08/2012: 5 August or 8 May),
    or none reads them all, the column is not guessed: ``problem`` says so, with values
    that read both ways and the ``date_format`` to set. In an Excel source, ISO dates
    (native date cells) are accepted besides and do not take part in the choice."""
    iso = " OR ".join(f"try_strptime({expr}, {_lit(f)}) IS NOT NULL" for f in ISO_FORMATS)
    scope = f"{expr} IS NOT NULL" + (f" AND NOT ({iso})" if excel else "")
    counts = con.execute(
        "SELECT count(*), "
        + ", ".join(
            f"count(*) FILTER (WHERE try_strptime({expr}, {_lit(f)}) IS NOT NULL)"
            for f in DATE_FORMATS
        )
        + f" FROM raw_{table} WHERE {scope}"
    ).fetchone()
    n, fits = counts[0], dict(zip(DATE_FORMATS, counts[1:], strict=True))
    extra = list(ISO_FORMATS) if excel else []
    where = f"{table}.{column} (source column {src_col})"
    if n == 0:
        return list(dict.fromkeys([DATE_FORMATS[0], *extra])), None
    every = [f for f in DATE_FORMATS if fits[f] == n]
    if len(every) == 1:
        return list(dict.fromkeys([every[0], *extra])), None
    if not every:
        best = max(DATE_FORMATS, key=lambda f: fits[f])
        return list(dict.fromkeys([best, *extra])), (
            f"{where}: no one date format reads every value ({n} values; {best} reads "
            f"{fits[best]}); the rows it does not read are listed below. Set date_format "
            "in the mapping to the format the extract uses."
        )
    first, *others = every
    for other in others:
        differ = con.execute(
            f"SELECT DISTINCT {expr} FROM raw_{table} WHERE {scope} AND "
            f"try_strptime({expr}, {_lit(first)}) <> try_strptime({expr}, {_lit(other)}) "
            f"ORDER BY 1 LIMIT 5"
        ).fetchall()
        if differ:
            shown = ", ".join(repr(v) for (v,) in differ)
            return list(dict.fromkeys([first, *extra])), (
                f"{where}: the dates can be read as {first} or as {other}, which give "
                f"different dates for {shown}...; the import does not guess. Set date_format "
                f'in the mapping (date_format: "{first}" or date_format: "{other}").'
            )
    return list(dict.fromkeys([first, *extra])), None


def _refuse_wide(fpath: Path, table: str, have: list[str], cols: dict) -> None:
    """An event table (one row per diagnosis, prescription or episode) read from a wide
    file (one row per patient, a pair of columns per condition: ``HTN_date``, ``HTN_code``,
    ``DM_date``...) fails row by row; say what the file is and how to reshape it."""
    import re

    if table == "patients":
        return
    stems: dict[str, set] = {}
    for c in have:
        m = re.fullmatch(r"(.+?)[_ .-]?(date|data|datum|code|codice|atc|icd10|icd9)", c, re.I)
        if m:
            stems.setdefault(m.group(1).lower(), set()).add(m.group(2).lower())
    pairs = sorted(s for s, kinds in stems.items() if len(kinds) >= 2)
    if len(pairs) < 2:
        return
    used = ", ".join(f"{k}: {v}" for k, v in cols.items())
    raise AnalysisError(
        f"Source file {fpath}: the {table} table looks wide (one row per patient, a pair of "
        f"columns per item: {', '.join(pairs[:6])}{'...' if len(pairs) > 6 else ''}); the "
        f"contract needs one row per event ({', '.join(c.name for c in SCHEMA[table])}). "
        "Reshape it to long first, e.g. with pandas: "
        "df.melt(id_vars=[patient id]) or one block per item stacked with pd.concat, "
        f"then map the long file's columns (the mapping read {used or 'no columns'})."
    )


def import_extract(mapping: str | Path, into: str | Path) -> dict:
    """Import the extract described by ``mapping`` into the contract folder ``into``;
    returns the import report (also written as ``import_report.json``). Each table is read
    from its files (:func:`_raw_view`), each column turned into its contract type with the
    checks of its kind (:func:`_column`), every problem listed at once; nothing is written
    into ``into`` unless every table imports."""
    import duckdb

    mapping = Path(mapping)
    into = Path(into)
    m = _load_mapping(mapping)
    base = mapping.parent
    con = duckdb.connect()
    report: dict = {"mapping": mapping.name, "tables": {}, "repairs": {}, "codings": {}}
    problems = _Problems()
    icd10 = m.get("code_system") == "icd10"
    map_path = None
    if icd10 and m.get("icd10_map"):
        map_path = Path(m["icd10_map"])
        if not map_path.is_absolute() and (base / map_path).exists():
            map_path = base / map_path
    into.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{into.name}.tmp-", dir=into.parent))
    work = Path(tempfile.mkdtemp(prefix="analysis-import-"))
    work.chmod(0o700)
    for spec in m["tables"].values():
        spec["_workdir"] = str(work)
    try:
        for table in TABLES:
            spec = m["tables"][table]
            files = spec["files"] if isinstance(spec["files"], list) else [spec["files"]]
            _raw_view(con, table, spec, files, base)
            out_cols, checks = [], []
            for col in SCHEMA[table]:
                expr = _column(con, table, col, spec, files, report, problems, checks)
                out_cols.append(f"{expr} AS {col.name}")
            _list_problems(con, table, spec, checks, problems)
            query = f"SELECT {', '.join(out_cols)} FROM raw_{table}"
            if table == "patients":
                recoded = con.execute(
                    f"SELECT count(*) FROM raw_patients WHERE sex NOT IN ({sql_list(SEXES)})"
                ).fetchone()[0]
                report["repairs"]["sex_recoded"] = int(recoded)
            if table == "diagnoses" and icd10 and not problems.lines:
                query = map_icd10(con, query, tmp, report, map_path)
            if not problems.lines:
                out = tmp / f"{table}.parquet"
                con.execute(f"COPY ({query}) TO {_lit(out)} (FORMAT parquet, COMPRESSION zstd)")
                report["tables"][table] = con.execute(
                    f"SELECT count(*) FROM read_parquet({_lit(out)})"
                ).fetchone()[0]
        if problems.lines:
            lines, n = problems.lines, problems.n
            more = n - len(lines[:MAX_LISTED])
            raise AnalysisError(
                f"The extract cannot be imported ({n} problem(s)):\n  "
                + "\n  ".join(lines[:MAX_LISTED])
                + (f"\n  ... and {more} more." if more > 0 else "")
                + f"\nFix the source or the mapping ({mapping})."
            )
        _write_and_publish(tmp, into, m, mapping, report)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)
    return report


@dataclass
class _Problems:
    """Every problem found, in order (``lines``), and how many (``n``: rows beyond the
    listed ones count too)."""

    lines: list = field(default_factory=list)
    n: int = 0


def _raw_view(con, table: str, spec: dict, files: list, base: Path) -> None:
    """``raw_<table>``: the table's source files, one row per source row, every contract
    column as text (a mapped column, a constant, or NULL), with the file and row named."""
    cols = spec.get("columns") or {}
    consts = spec.get("constants") or {}
    selects = []
    for i, f in enumerate(files):
        fpath = (base / f) if not Path(f).is_absolute() else Path(f)
        view = f"src_{table}_{i}"
        _read_source(con, fpath, spec, view)
        have = [r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()]
        missing = [v for v in cols.values() if v not in have]
        if missing:
            hint = {v: nearest_name(v, have) for v in missing}
            raise AnalysisError(
                f"Source file {fpath}: no column(s) "
                + ", ".join(
                    f"{v!r}" + (f" (did you mean {hint[v]!r}?)" if hint[v] else "") for v in missing
                )
                + f"; the file has {', '.join(have[:-1])}."
            )
        _refuse_wide(fpath, table, have, cols)
        parts = [f"{_lit(fpath.name)} AS __file", "__row"]
        for col in SCHEMA[table]:
            if col.name in cols:
                parts.append(f"trim(CAST({_q(cols[col.name])} AS VARCHAR)) AS {col.name}")
            elif col.name in consts:
                parts.append(f"{_lit(consts[col.name])} AS {col.name}")
            else:
                parts.append(f"NULL::VARCHAR AS {col.name}")
        selects.append(f"SELECT {', '.join(parts)} FROM {view}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW raw_{table} AS " + " UNION ALL ".join(selects))


def _column(con, table, col, spec, files, report, problems, checks) -> str:
    """The SQL that turns one column of ``raw_<table>`` into its contract type, by its
    kind (the mapping's value map, sex codes, dates, vocabularies, integers, required
    values); the checks of its values are appended to ``checks``."""
    c = col.name
    vmaps = spec.get("values") or {}
    expr = f"nullif({c}, '')"
    if c in vmaps:
        cases = " ".join(f"WHEN {expr} = {_lit(k)} THEN {_lit(v)}" for k, v in vmaps[c].items())
        expr = f"(CASE {cases} ELSE {expr} END)"
    if c == "sex":
        cases = " ".join(
            f"WHEN upper({expr}) = {_lit(k)} THEN {_lit(v)}" for k, v in SEX_CODES.items()
        )
        expr = f"(CASE {cases} ELSE {expr} END)"
        checks.append(
            (c, f"{expr} NOT IN ({sql_list(SEXES)})", "a sex coded F/M, 1/2, male/female")
        )
    if c == "sex" or c in vmaps:
        report["codings"][f"{table}.{c}"] = _coding_report(con, table, f"nullif({c}, '')", expr)
    if col.kind in ("date", "optional_date"):
        expr = _date_column(con, table, c, expr, spec, files, report, problems, checks)
    if col.kind == "vocab" and c != "sex":
        vocab = ", ".join(_lit(v) for v in col.vocabulary)
        checks.append(
            (
                c,
                f"{expr} IS NOT NULL AND {expr} NOT IN ({vocab})",
                col.expected + (" (after the mapping's value map)" if c in vmaps else ""),
            )
        )
    if col.kind == "integer":
        num = f"TRY_CAST({expr} AS DOUBLE)"
        checks.append(
            (
                c,
                f"{expr} IS NOT NULL AND ({num} IS NULL OR {num} <> floor({num}) "
                f"OR {num} < {col.low} OR {num} > {col.high})",
                col.expected,
            )
        )
        expr = f"CAST({num} AS INTEGER)"
    if col.kind in ("id", "text", "vocab", "integer", "date"):
        checks.append((c, f"{_q(c)} IS NULL OR {_q(c)} = ''", "a value (it is empty)"))
    return expr


def _date_column(con, table, c, expr, spec, files, report, problems, checks) -> str:
    """A date column: read in the mapping's ``date_format``, or in the format its values
    are written in (an ambiguous one is a problem); native Excel dates as ISO dates."""
    fmt = spec.get("date_format")
    cols = spec.get("columns") or {}
    excel = any(str(f).lower().endswith((".xlsx", ".xlsm")) for f in files)
    # native Excel date cells arrive as ISO dates: accepted besides date_format
    if fmt:
        formats = list(dict.fromkeys([fmt, *(ISO_FORMATS if excel else ())]))
    else:
        formats, ambiguous = _date_formats(con, table, c, expr, excel, cols.get(c, "constant"))
        if ambiguous:
            problems.lines.insert(0, ambiguous)
            problems.n += 1
    parsed = "coalesce(" + ", ".join(f"try_strptime({expr}, {_lit(f)})" for f in formats) + ")"
    which = (
        "CASE "
        + " ".join(
            f"WHEN try_strptime({expr}, {_lit(f)}) IS NOT NULL THEN {_lit(f)}" for f in formats
        )
        + " ELSE 'not a date' END"
    )
    report["codings"][f"{table}.{c}"] = [
        {"source": "dates written " + r["read_as"], "read_as": "date", "rows": r["rows"]}
        for r in _coding_report(con, table, which, which, where=expr)
    ]
    checks.append(
        (
            c,
            f"{expr} IS NOT NULL AND {parsed} IS NULL",
            f"a date in the format {fmt} (the mapping's date_format)"
            if fmt
            else f"a date in the format {formats[0]} (read from the column's "
            "values; for another format set date_format in the mapping, e.g. "
            'date_format: "%d.%m.%y")',
        )
    )
    return f"CAST({parsed} AS DATE)"


def _list_problems(con, table: str, spec: dict, checks: list, problems: _Problems) -> None:
    """Count the rows failing each check, and list the first of them by file, source
    column, row and value."""
    cols = spec.get("columns") or {}
    consts = spec.get("constants") or {}
    for c, pred, expected in checks:
        n = con.execute(f"SELECT count(*) FROM raw_{table} WHERE {pred}").fetchone()[0]
        if not n:
            continue
        problems.n += n
        for f, r, v in con.execute(
            f"SELECT __file, __row, {_q(c)} FROM raw_{table} WHERE {pred} "
            f"ORDER BY __file, __row LIMIT {MAX_LISTED}"
        ).fetchall():
            src_col = cols.get(c, f"constant {consts.get(c)!r}")
            shown = (
                repr(v[:60] + ("..." if len(v) > 60 else ""))
                if v not in (None, "")
                else "an empty value"
            )
            problems.lines.append(
                f"{f}, column {src_col} (-> {table}.{c}), row {r}: expected {expected}, "
                f"found {shown}"
            )


def _write_and_publish(tmp: Path, into: Path, m: dict, mapping: Path, report: dict) -> None:
    """The folder's ``dataset.json`` and ``import_report.json``, then the folder published
    whole in place of ``into`` (checked first: :func:`publish`)."""
    meta = {"synthetic": False, "imported_from": mapping.name, "diagnosis_vocabulary": "ICD9CM"}
    if m.get("extract_date"):
        meta["extract_date"] = str(m["extract_date"])
    if report.get("code_mapping"):
        meta["code_mapping"] = report["code_mapping"]
        if report["code_mapping"]["unmapped_records"]:
            meta["unmapped_diagnoses"] = {"ICD10": report["code_mapping"]["unmapped_records"]}
    atomic_write_text(tmp / "dataset.json", json.dumps(meta, indent=2) + "\n")
    atomic_write_text(tmp / "import_report.json", json.dumps(report, indent=2, default=int) + "\n")
    publish(
        tmp,
        into,
        source_hint=(
            "These checks run on the imported tables: a row number counts the imported "
            "rows of that table, in source order, after codes without a mapping were left out; "
            f"look the value up in the source files named in {mapping.name}."
        ),
    )
