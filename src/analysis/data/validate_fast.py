"""Faster routes to the counts that :func:`analysis.data.validate_database` needs.

Each route answers a question the SQL route answers with a scan or a join, gives exactly
the same counts (``tests/test_data_validate_fast.py`` runs both on clean and broken data), and
returns ``None`` when the input does not allow it, so the caller falls back to SQL. Rows
are still listed by SQL whenever a count is not zero.

* **Parquet statistics** (:func:`settled_by_stats`): every row group of a Parquet file
  records, per column, the number of nulls and the smallest and largest value. A column
  whose statistics show no null, integers inside their range, dates not after the
  ceiling, or text whose values all start with a printable ASCII character cannot hold
  a value the check would refuse, so it needs no scan. DuckDB trusts the same statistics
  to skip row groups when it filters.
* **Direct-address lookup** (:func:`event_checks`): when every ``patient_id`` is a
  non-negative integer and the largest is below 2 n + 1,000,000 (n patients), the
  patients' birth dates go into an array indexed by id (4 bytes per id: 40 MB for 10
  million patients) and every event row is checked by one array index, instead of a hash
  join of the 83 million event rows of 10 million synthetic patients against the
  patients. Duplicate ids are counted on the way: the number of distinct ids is the
  number of filled slots (measured against the join in the README's Performance section).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from analysis.contract import Column

# integer types numpy can index with (data._INT_TYPES without HUGEINT and UBIGINT)
_INT_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER")
BATCH_ROWS = 1 << 16  # 64k rows: 20 MB of buffers, where 1M rows took 100 MB more
_UNKNOWN = np.iinfo(np.int32).min  # no patient with this id (and no date is before it)
_EPOCH = dt.date(1970, 1, 1)


# --------------------------------------------------------------------- Parquet statistics
@dataclass(frozen=True)
class ColumnStats:
    """Statistics of one Parquet column over all its row groups: the number of nulls and
    the smallest and largest value (int, date or str); None where a row group lacks them."""

    nulls: int | None
    low: object = None
    high: object = None
    rows: int | None = None  # values, nulls included


def parquet_column_stats(path) -> dict[str, ColumnStats]:
    """:class:`ColumnStats` of every column of a Parquet file, from its footer (no data
    page is read)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    if not unique_names(path):
        return {}  # DuckDB renames a repeated column: which copy is meant is not clear
    groups: dict[str, list] = {}
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        for j in range(rg.num_columns):
            c = rg.column(j)
            st = c.statistics
            nulls = st.null_count if st is not None and st.has_null_count else None
            try:
                low, high = (st.min, st.max) if st is not None and st.has_min_max else (None, None)
            except (OverflowError, ValueError, UnicodeDecodeError):  # e.g. year 12000, infinity
                low = high = nulls = None
            if c.num_values and low is None and nulls != c.num_values:
                nulls = None  # values but no usable min/max: trust nothing
            groups.setdefault(c.path_in_schema, []).append((nulls, low, high, rg.num_rows))
    out = {}
    for name, rows in groups.items():
        nulls = [r[0] for r in rows]
        lows = [r[1] for r in rows if r[1] is not None]
        highs = [r[2] for r in rows if r[2] is not None]
        try:
            out[name] = ColumnStats(
                nulls=None if None in nulls else sum(nulls),
                low=min(lows) if lows else None,
                high=max(highs) if highs else None,
                rows=sum(r[3] for r in rows),
            )
        except TypeError:  # values of mixed kinds: trust nothing
            out[name] = ColumnStats(None)
    return out


def unique_names(path) -> bool:
    """Whether every column name of a Parquet file occurs once."""
    import pyarrow.parquet as pq

    names = pq.ParquetFile(path).schema_arrow.names
    return len(names) == len(set(names))


def is_date(v) -> bool:
    """A calendar date, not a datetime or pandas Timestamp (subclasses of date)."""
    return type(v) is dt.date


def settled_by_stats(col: Column, col_type: str, stats: ColumnStats | None) -> bool:
    """Whether ``stats`` prove that no value of ``col`` (stored as ``col_type``) fails the
    contract check of :func:`analysis.data._column_check` (so the column needs no scan)."""
    if stats is None or stats.nulls is None:
        return False
    if col.kind == "optional_date":
        return col_type == "DATE"
    if stats.nulls:
        return False
    if col.kind == "id" and col_type in _INT_TYPES:
        return True
    if col.kind == "date" and col_type == "DATE":
        return True  # (only the null count is used)
    if col_type == "VARCHAR" and not isinstance(stats.low, str):
        return False
    if col.kind in ("id", "text") and col_type == "VARCHAR":
        # refused: empty or only white space (DuckDB's trim strips the space and Unicode
        # spaces such as U+00A0, all >= U+0080). Every value's first character lies between
        # those of the smallest and the largest value: if that range is inside
        # (space, U+0080), no value starts with white space, so none is blank.
        return (
            bool(stats.low)
            and isinstance(stats.high, str)
            and bool(stats.high)
            and " " < stats.low[0]
            and stats.high[0] < "\x80"
        )
    if col.kind == "integer" and col_type in _INT_TYPES:
        return isinstance(stats.low, int) and stats.low >= col.low and stats.high <= col.high
    if col.kind == "vocab" and col_type == "VARCHAR":
        return stats.low == stats.high and stats.low in col.vocabulary
    return False


def latest(stats: ColumnStats | None) -> dt.date | None:
    """The largest value of a DATE column by its statistics (None if unknown, or if the
    values are timestamps)."""
    if stats is None or stats.nulls is None or not is_date(stats.high):
        return None
    return stats.high


# ------------------------------------------------------------------ direct-address lookup
@dataclass(frozen=True)
class EventCounts:
    """Counts of ``validate_database``'s relational checks."""

    duplicates: int  # count(*) - count(DISTINCT patient_id) of patients
    events: dict  # table -> (unknown patient, before birth, after the ceiling)


def _values(arr) -> tuple[np.ndarray, np.ndarray | None]:
    """An Arrow array's values as numpy (dates as int32 days since 1970-01-01) and its
    validity mask (None without nulls), read from its buffers: no copy, and no import of
    pyarrow.compute (which imports pandas)."""
    import pyarrow as pa

    if pa.types.is_date32(arr.type):
        dtype = np.int32
    elif pa.types.is_integer(arr.type):
        kind = "i" if pa.types.is_signed_integer(arr.type) else "u"
        dtype = np.dtype(f"{kind}{arr.type.bit_width // 8}")
    else:
        raise TypeError(f"unexpected Arrow type {arr.type}")
    validity, data = arr.buffers()[0], arr.buffers()[1]
    values = np.frombuffer(data, dtype=dtype, count=len(arr) + arr.offset)[arr.offset :]
    if arr.null_count == 0 or validity is None:
        return values, None
    bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
    return values, bits[arr.offset : arr.offset + len(arr)].astype(bool)


def _parts(con, table: str, columns: tuple[str, ...], path=None) -> list:
    """Units of reading work for ``columns`` of ``table``, each a callable that returns an
    iterator of Arrow record batches: one per row group of a Parquet file (read by
    pyarrow, no conversion), else one stream from DuckDB (the views of a .duckdb file)."""
    if path is not None and str(path).endswith(".parquet") and unique_names(path):
        import pyarrow.parquet as pq

        def group(i):
            f = pq.ParquetFile(path, pre_buffer=False)
            return f.iter_batches(
                batch_size=BATCH_ROWS, row_groups=[i], columns=list(columns), use_threads=False
            )

        n = pq.ParquetFile(path).metadata.num_row_groups
        return [lambda i=i: group(i) for i in range(n)]
    cols = ", ".join(columns)
    cursor = con.cursor()  # made here, used by one worker thread, closed when read

    def stream():
        try:
            yield from cursor.execute(f"SELECT {cols} FROM src_{table}").fetch_record_batch(
                BATCH_ROWS
            )
        finally:
            cursor.close()

    return [stream]


def event_checks(
    con,
    types: dict[str, dict[str, str]],
    event_tables,
    ceiling: dt.date,
    files: dict | None = None,
    *,
    patient_stats: dict | None = None,
    max_span_factor: float = 2.0,
    threads: int = 2,
) -> EventCounts | None:
    """Duplicate patient ids and, per event table, events of an unknown patient, before
    the patient's birth and after ``ceiling``; None when the ids or dates do not allow the
    lookup (text ids, sparse or negative ids, null ids or birth dates, non-DATE columns).

    ``con`` has the views ``src_<table>``; ``types`` maps table -> column -> DuckDB type;
    ``files`` table -> Parquet file, read directly when given; ``patient_stats`` the
    :class:`ColumnStats` of the patients file, which spare a scan for the id range;
    ``threads`` row groups are read and checked at once (pyarrow and numpy release the GIL).
    """
    from concurrent.futures import ThreadPoolExecutor

    files = files or {}
    if any(types[t].get("patient_id") not in _INT_TYPES for t in ("patients", *event_tables)):
        return None
    if types["patients"].get("birth_date") != "DATE" or any(
        types[t].get("date") != "DATE" for t in event_tables
    ):
        return None
    ids, born = (patient_stats or {}).get("patient_id"), (patient_stats or {}).get("birth_date")
    if (
        ids
        and born
        and ids.nulls is not None
        and born.nulls is not None
        and ids.rows
        and type(ids.low) is int
        and type(ids.high) is int
        and is_date(born.low)
    ):
        lo, hi, n = ids.low, ids.high, ids.rows
        n_ids, n_births, first_birth = n - ids.nulls, n - born.nulls, (born.low - _EPOCH).days
    else:
        lo, hi, n, n_ids, n_births, first_birth = con.execute(
            "SELECT min(patient_id), max(patient_id), count(*), count(patient_id), "
            "count(birth_date), "
            "min(birth_date) - DATE '1970-01-01' FROM src_patients"
        ).fetchone()
    if not n or n_ids != n or n_births != n or lo < 0 or first_birth <= _UNKNOWN:
        return None
    size = int(hi) + 1  # the array is indexed by the id itself
    if size > max_span_factor * n + 1_000_000:
        return None
    births = np.full(size, _UNKNOWN, dtype=np.int32)

    def fill(part):
        for batch in part():
            births[_values(batch.column(0))[0]] = _values(batch.column(1))[0]

    ceiling_days = (ceiling - _EPOCH).days
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(
            pool.map(
                fill, _parts(con, "patients", ("patient_id", "birth_date"), files.get("patients"))
            )
        )
        duplicates = n - int(np.count_nonzero(births != _UNKNOWN))
        units = [
            (table, part)
            for table in event_tables
            for part in _parts(con, table, ("patient_id", "date"), files.get(table))
        ]
        results = pool.map(lambda u: _check_events(u[1](), births, ceiling_days), units)
        events = {table: (0, 0, 0) for table in event_tables}
        for (table, _), counts in zip(units, results, strict=True):
            events[table] = tuple(a + b for a, b in zip(events[table], counts, strict=True))
    import pyarrow as pa

    pa.default_memory_pool().release_unused()  # the analysis that follows needs the memory
    return EventCounts(duplicates=duplicates, events=events)


def _check_events(batches, births: np.ndarray, ceiling_days: int) -> tuple[int, int, int]:
    """(unknown patient, before birth, after the ceiling) over record batches of
    (patient_id, date); ``births[id]`` is the birth day of patient ``id`` or _UNKNOWN."""
    size = len(births)
    n_unknown = n_before = n_after = 0
    for batch in batches:
        idx, id_ok = _values(batch.column(0))
        d, date_ok = _values(batch.column(1))
        if id_ok is not None:  # a null's slot holds any value: point it at id 0
            idx = np.where(id_ok, idx, 0)
        if len(idx) and (idx.min() < 0 or idx.max() >= size):  # ids outside the patients' range
            inside = (idx >= 0) & (idx < size)
            born = np.full(len(idx), _UNKNOWN, dtype=np.int32)
            born[inside] = births[idx[inside]]
        else:
            born = births[idx]
        is_unknown = born == _UNKNOWN
        # an unknown patient's "birth" is the smallest int32: no date is before it
        before = d < born
        after = d > ceiling_days
        if id_ok is not None:
            is_unknown &= id_ok
            before &= id_ok
        if date_ok is not None:
            before &= date_ok
            after &= date_ok
        n_unknown += int(np.count_nonzero(is_unknown))
        n_before += int(np.count_nonzero(before))
        n_after += int(np.count_nonzero(after))
    return n_unknown, n_before, n_after
