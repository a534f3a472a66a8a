"""Passwords never enter a parameter, and problems with real data never enter an output.

:func:`holds_password` recognises every libpq spelling of a password: the user-info of a
``postgresql://`` or ``postgres://`` URL (any letter case), a ``password=`` query
parameter, and a ``password=`` keyword of a key/value connection string. Such a value is
refused by name, never echoed (it would reach an executed notebook, a manifest, an index).

:func:`withheld_error` turns an error about data not marked synthetic (a validation
message can quote a patient's id, birth date or codes) into one that says only how to
see the details; the details go to the terminal and to a log outside the report folder.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse, urlsplit

from analysis.errors import AnalysisError
from analysis.files import write_private

_URL = re.compile(r"postgres(?:ql)?://\S*", re.IGNORECASE)
_KEYWORD = re.compile(r"(^|[\s?&;=])password\s*=", re.IGNORECASE)


def holds_password(value) -> bool:
    """Whether a text value carries a database password in any libpq spelling, anywhere
    in it (``name=postgresql://u:pw@host/db`` too; %-escapes decoded first)."""
    if not isinstance(value, str):
        return False
    from urllib.parse import unquote

    text = unquote(value)
    for m in _URL.finditer(text):
        try:
            u = urlsplit(m.group(0))
        except ValueError:
            return True  # unparsable: treat as unsafe
        netloc = u.netloc.rsplit("@", 1)
        if len(netloc) == 2 and ":" in netloc[0]:
            return True
        if any(k.lower() == "password" for k in parse_qs(u.query, keep_blank_values=True)):
            return True
    return bool(_KEYWORD.search(text))


def redact(url: str) -> str:
    """The URL without any password (for messages and manifests)."""
    text = str(url)
    if not holds_password(text):
        return text
    u = urlparse(text)
    if u.password:
        u = u._replace(netloc=u.netloc.replace(f":{u.password}@", ":***@"))
    text = u.geturl()
    return re.sub(r"(?i)(password\s*=)[^&\s;]*", r"\1***", text)


def refuse_passwords_in(obj, source: str) -> None:
    """Refuse a password anywhere in a nested structure (keys and values of a YAML file)."""

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                yield k
                yield from walk(v)
        elif isinstance(x, list | tuple):
            for v in x:
                yield from walk(v)
        else:
            yield x

    if any(holds_password(v) for v in walk(obj)):
        raise AnalysisError(
            f"{source} holds a database password (not shown). Remove it and set PGPASSWORD "
            "(or name another variable with ?password_env=VAR). Nothing was run."
        )


def refuse_passwords(values: dict, source: str) -> None:
    """Refuse any value of ``values`` (name -> value; lists searched too) holding a
    password, naming the parameter but never the value."""
    bad = []
    for name, v in values.items():
        items = v if isinstance(v, list | tuple) else [v]
        if any(holds_password(x) for x in items):
            bad.append(name)
    if bad:
        raise AnalysisError(
            f"{source}: {', '.join(repr(b) for b in bad)} holds a database password (not shown). "
            f"Remove it "
            "and set PGPASSWORD (or name another variable with ?password_env=VAR); a password in a "
            "parameter would be written to every executed notebook, manifest and report. Nothing "
            "was run."
        )


LOG_KEEP_DAYS = 30
"""A problem log older than this many days is deleted at the next log written."""
LOG_KEEP_FILES = 50
"""At most this many problem logs are kept (the newest)."""


def log_dir() -> Path:
    """Where problems with real data are logged: outside every report folder
    (``ANALYSIS_LOG_DIR``, else ``$XDG_CACHE_HOME/analysis/logs``, else
    ``~/.cache/analysis/logs``)."""
    base = os.environ.get("ANALYSIS_LOG_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "analysis", "logs"
    )
    return Path(base)


def _private_log_dir() -> Path:
    """The log folder, created (or narrowed to) 0700: it holds values of real patients."""
    d = log_dir()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    if d.is_symlink():
        raise AnalysisError(
            f"The log folder {d} is a symbolic link; refused (set ANALYSIS_LOG_DIR)."
        )
    os.chmod(d, 0o700)
    return d


def problem_logs() -> list[Path]:
    """The problem logs kept, oldest first."""
    d = log_dir()
    if not d.is_dir():
        return []
    logs = [p for p in d.glob("*.log") if p.is_file() and not p.is_symlink()]
    return sorted(logs, key=lambda p: (p.stat().st_mtime, p.name))


def prune_logs(*, keep_days: int = LOG_KEEP_DAYS, keep_files: int = LOG_KEEP_FILES) -> int:
    """Delete problem logs older than ``keep_days`` days and all but the newest
    ``keep_files``; returns how many were deleted (``keep_files=0``: all of them)."""
    import time

    logs = problem_logs()
    cutoff = time.time() - keep_days * 86400
    old = [p for p in logs if p.stat().st_mtime < cutoff]
    rest = [p for p in logs if p not in old]
    extra = rest[: max(0, len(rest) - keep_files)]
    for p in old + extra:
        p.unlink(missing_ok=True)
    for p in rest[len(extra) :]:  # logs written before they were private
        if p.stat().st_mode & 0o077:
            os.chmod(p, 0o600)
    return len(old) + len(extra)


def write_problem_log(text: str, what: str) -> Path:
    """Write a problem log (0600, in a 0700 folder) and prune the old ones."""
    d = _private_log_dir()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path = write_private(d / f"{what}-{stamp}.log", text + "\n")
    prune_logs()
    return path


def withheld_error(exc: BaseException, data, *, notebook: str = "") -> AnalysisError:
    """An error for an output: says how to see the problems, never what they are. The
    full message is printed to the terminal (stderr) and written to a log outside the
    report folder."""
    import sys

    where = redact(str(data))
    path = write_problem_log(f"{type(exc).__name__}: {exc}", "problems")
    print(
        f"Problems with {where} (not written to any report):\n{exc}\n(also in {path})",
        file=sys.stderr,
    )
    return AnalysisError(
        f"The data at {where} could not be analysed{' by ' + notebook if notebook else ''}. The "
        f"details "
        "are withheld from this output because the data are not marked synthetic (they may quote a "
        f"patient's values). See them with:\n    python -m analysis figures --data {where}\n"
        f"(they were also written to {path}, outside the report folder)."
    )
