"""What earlier runs released from the same data: the ledger the disclosure audit reads.

An attacker reads every file of a reports folder together: the tables of notebook 03 with
the sensitivity grid of notebook 04, this batch's with last week's. So every number a run
releases under a disclosure rule is also appended, as the group it counts
(:class:`analysis.outputs.auditor.Group` as plain data), to a ledger in the reports folder
(``<reports folder>/.disclosure-ledger/<key>.jsonl``), and every later run on the same data
audits its tables with those numbers as known (:class:`~analysis.outputs.auditor.RunAuditor`).

* **Same data, same definitions**: the ledger's key is the sha256 of the data's fingerprint
  (the sha256 of every input file; a server database's address) and of the parameters that
  decide which events are read (:data:`DEFINITION`). Runs that differ only in severity,
  episodes, elderly age and code lists share a ledger: the attacker's space holds every
  definition's episode counts and code lists at once. Runs with other windows or sites are
  other variables; an attacker combining them is not modelled (said in the release sheet).
* **What is in it**: the released numbers only (what the files already show; withheld ones
  as null), the groups they count, and which run released them. No patient-level value.
* **Order in a batch**: a batch's runs audit in the order of the batch file, whatever the
  number of workers, so the same batch withholds the same numbers every time: a run waits
  (before its first release) for the runs before it, which the batch marks done as each
  ends (:func:`mark_done`), failed or not.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
import uuid
from pathlib import Path

from analysis.errors import AnalysisError
from analysis.files import real_folder

LEDGER_DIR = ".disclosure-ledger"
TURN_ENV = "ANALYSIS_AUDIT_TURN"
"""The batch's order for a run's kernel: JSON {"exec": id, "before": [run names]}."""
DEFINITION = (
    "index_date",
    "lookback_years",
    "population",
    "pain_sites",
    "pain_causes",
    "events_outside_registration",
)
"""The parameters that decide which events are read: runs that differ in one of them count
other variables, and keep other ledgers."""
WAIT_S = 6 * 3600
"""Longest a run waits for the runs before it in its batch."""


def ledger_key(fingerprint: dict, params) -> str:
    """The ledger of this data under these definitions."""
    what = {
        "data": sorted(fingerprint.items()),
        "definition": {k: _plain(getattr(params, k)) for k in DEFINITION},
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]


def _plain(v):
    return list(v) if isinstance(v, tuple | list) else str(v)


def _folder(root: Path) -> Path:
    root = Path(root)
    folder = root / LEDGER_DIR
    if folder.is_symlink():
        raise OSError(f"{folder} is a symbolic link: the disclosure ledger never follows one.")
    folder.mkdir(parents=True, exist_ok=True)
    return real_folder(folder, "Disclosure ledger")


@contextlib.contextmanager
def _locked(path: Path, mode: str):
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if mode == "w" else fcntl.LOCK_SH)
        with os.fdopen(os.dup(fd), "r+" if mode == "w" else "r", encoding="utf-8") as f:
            yield f
    finally:
        os.close(fd)


class Ledger:
    """One run's view of the ledger of its data: what runs before it released, and where
    its own releases go."""

    def __init__(self, root: Path, key: str, run: str, turn: dict | None = None):
        self.root, self.key, self.run = Path(root), key, run
        self.turn = turn
        self.exec = (turn or {}).get("exec") or uuid.uuid4().hex

    @classmethod
    def for_run(cls, root: Path, fingerprint: dict, params, run: str) -> Ledger:
        turn = parse_turn(os.environ.get(TURN_ENV))
        if turn is not None and not (_folder(root) / "turns" / turn["exec"] / OPEN).exists():
            raise AnalysisError(
                f"{TURN_ENV} names batch execution {turn['exec']}, which is not running in "
                f"{root}: a run outside a batch audits with every run before it. Unset "
                f"{TURN_ENV} (it is set by `analysis batch` for its own kernels only)."
            )
        return cls(root, ledger_key(fingerprint, params), run, turn)

    @property
    def path(self) -> Path:
        return _folder(self.root) / f"{self.key}.jsonl"

    def earlier(self) -> list[dict]:
        """The records of the runs released before this one (waiting, in a batch, for
        the runs before it): every record of other executions, and of this execution those
        of the runs before it."""
        before = set((self.turn or {}).get("before") or ())
        deadline = time.monotonic() + WAIT_S
        turns = _folder(self.root) / "turns" / self.exec
        while before and not all((turns / f"{n}.done").exists() for n in before):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"The disclosure audit of {self.run} waited {WAIT_S} s for the runs "
                    f"before it: {', '.join(sorted(before))}."
                )
            time.sleep(0.1)
        path = self.path
        if not path.exists():
            return []
        with _locked(path, "r") as f:
            lines = f.read().splitlines()
        out = []
        for i, line in enumerate(lines, 1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{path}, line {i}: not a ledger record (JSON).") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("entries"), list):
                raise ValueError(f"{path}, line {i}: not a ledger record.")
            mine = rec.get("exec") == self.exec
            if not mine or rec.get("run") in before:
                out.append(rec)
        return out

    def append(self, table: str, entries: list[dict], **about) -> None:
        """Record the numbers of ``table`` this run releases (one JSON line, locked)."""
        rec = {"exec": self.exec, "run": self.run, "table": table, **about, "entries": entries}
        with _locked(self.path, "w") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")


OPEN = ".open"
"""The mark of a batch execution that is running (only then do its runs leave aside the
records of its later runs)."""
_EXEC = re.compile(r"[0-9a-f]{32}")
_RUN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


def parse_turn(text: str | None) -> dict | None:
    """The batch order of :data:`TURN_ENV`, checked: ``{"exec": 32 hex digits, "before":
    [run names]}``. Anything else is refused (it would name files and decide which
    earlier releases the audit reads)."""
    if not text:
        return None

    try:
        turn = json.loads(text)
    except json.JSONDecodeError:
        turn = None
    ok = (
        isinstance(turn, dict)
        and set(turn) == {"exec", "before"}
        and isinstance(turn["exec"], str)
        and _EXEC.fullmatch(turn["exec"]) is not None
        and isinstance(turn["before"], list)
        and all(isinstance(n, str) and _RUN.fullmatch(n) for n in turn["before"])
    )
    if not ok:
        raise AnalysisError(
            f'{TURN_ENV}: expected the batch\'s JSON {{"exec": 32 hex digits, "before": '
            f"[run names]}}, got {text[:120]!r}. Unset it: `analysis batch` sets it for its "
            "own kernels."
        )
    return turn


def start_execution(root: Path, exec_id: str) -> None:
    """Mark a batch execution as running (:data:`OPEN`)."""
    turns = _folder(root) / "turns" / exec_id
    turns.mkdir(parents=True, exist_ok=True)
    (turns / OPEN).touch()


def mark_done(root: Path, exec_id: str, run: str) -> None:
    """The batch's mark that ``run`` has ended (its releases are all in the ledger)."""
    turns = _folder(root) / "turns" / exec_id
    turns.mkdir(parents=True, exist_ok=True)
    (turns / f"{run}.done").touch()


def end_execution(root: Path, exec_id: str) -> None:
    """Remove a batch execution's marks (its records stay)."""
    import shutil

    folder = Path(root) / LEDGER_DIR / "turns" / exec_id
    if folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder, ignore_errors=True)
    for empty in (folder.parent, folder.parent.parent):  # no ledger left where none was
        with contextlib.suppress(OSError):
            empty.rmdir()
