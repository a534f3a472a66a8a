"""Content digests of input files (sha256), remembered by inode, size and file times so that an
unchanged file is not read again; the cache folder (``ANALYSIS_CACHE``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def _cache_folder() -> Path | None:
    """``ANALYSIS_CACHE`` (default ``~/.cache/analysis``); None when it is ``off``."""
    import os

    setting = os.environ.get("ANALYSIS_CACHE", "")
    if setting.lower() in ("off", "0", "no"):
        return None
    return Path(setting) if setting else Path.home() / ".cache" / "analysis"


def sha256_files(
    paths, threads: int = 2, memo: Path | None = None, memo_only: bool = False
) -> dict[Path, str] | None:
    """sha256 (hex) of each file's content, ``threads`` files at a time (hashlib releases
    the GIL while it hashes), by path, in the order given.

    ``memo``: a JSON file remembering each digest with the file's inode, size,
    modification and change times (nanoseconds). A file whose four are unchanged is not
    read again: the kernel sets the change time on every write and no tool can set it
    back (git trusts the same signature). As in git, an entry recorded less than a second
    after the file's last change is not trusted (file times are coarser than a write).
    The memo is replaced atomically. ``memo_only``: None unless every digest is in the
    memo (nothing is read).
    """
    import os
    import time
    from concurrent.futures import ThreadPoolExecutor

    def one(p):
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        return h.hexdigest()

    def signature(p):
        st = p.stat()
        return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]

    paths = [Path(p) for p in paths]
    known: dict = {}
    if memo is not None and os.name != "nt":  # Windows: st_ctime is the creation time
        try:
            known = json.loads(memo.read_text())
        except (OSError, ValueError):
            known = {}
        if not isinstance(known, dict):
            known = {}
    else:
        memo = None
    keys = {p: str(p.resolve()) for p in paths}
    sigs = {p: signature(p) for p in paths}

    def trusted(entry, sig):
        return (
            isinstance(entry, dict)
            and entry.get("signature") == sig
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("recorded_ns"), int)
            and sig[3] < entry["recorded_ns"] - 1_000_000_000
        )

    out = {p: known[keys[p]]["sha256"] for p in paths if trusted(known.get(keys[p]), sigs[p])}
    todo = [p for p in paths if p not in out]
    if todo and memo_only:
        return None
    if todo:
        now = time.time_ns()
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            out.update(zip(todo, pool.map(one, todo), strict=True))
        if memo is not None:
            known.update(
                {
                    keys[p]: {"signature": sigs[p], "sha256": out[p], "recorded_ns": now}
                    for p in todo
                }
            )
            known = _pruned(known)
            _write_atomic(memo, json.dumps(known, indent=0, sort_keys=True))
    return {p: out[p] for p in paths}


def remembered_digests(files) -> dict[Path, str]:
    """sha256 of each file, through the digest memo of the cache folder (a file unchanged
    since it was last hashed is not read again; see :func:`sha256_files`)."""
    folder = _cache_folder()
    return sha256_files(files, memo=folder / "digests.json" if folder else None)


def _pruned(memo: dict, keep: int = 1000) -> dict:
    """The memo without files that no longer exist, and at most the ``keep`` most recently
    recorded entries (it is read and rewritten whole)."""
    alive = [(k, v) for k, v in memo.items() if isinstance(v, dict) and Path(k).exists()]
    alive.sort(
        key=lambda kv: kv[1].get("recorded_ns", 0)
        if isinstance(kv[1].get("recorded_ns"), int)
        else 0,
        reverse=True,
    )
    return dict(alive[:keep])


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` beside ``path`` and rename it into place (a read-only or missing
    cache folder is not an error: the memo only saves time)."""
    import os
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError:
        pass
