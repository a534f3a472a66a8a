"""Writing files: the one writer of every output, and the check that it stays in its folder.

A report folder may come from somebody else, with links planted under the names a batch
writes. So every file the tool writes goes through :func:`atomic_write` (or
:func:`atomic_write_text`, :func:`write_private`):

- the temporary is created exclusively beside its target (``mkstemp``: a fresh random name,
  ``O_EXCL``, never a fixed name that a link could sit under);
- it is renamed over the final name (``os.replace`` replaces a link at that name, never
  writes through it), so a reader never sees a half-written file and a failure leaves none;
- with ``within=``, the target's folder must be a real folder (not a link) inside
  ``within`` after resolving links and ``..`` (:func:`inside`).

A new command writes through these, never with ``Path.write_text``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from analysis.errors import AnalysisError


def inside(folder: Path, target: Path) -> Path:
    """``target``, refused unless it lies inside ``folder`` (after resolving links and ..)."""
    f, t = Path(folder).resolve(), Path(target).resolve()
    if t != f and not t.is_relative_to(f):
        raise AnalysisError(f"Refused to write {target}: outside the output folder {folder}.")
    return Path(target)


def real_folder(folder: Path, what: str = "Output folder") -> Path:
    """``folder``, refused when it (or the name it is created under) is a symbolic link:
    a link would send every file written into it elsewhere."""
    folder = Path(folder)
    if folder.is_symlink():
        raise AnalysisError(
            f"{what} {folder} is a symbolic link (to {os.readlink(folder)}); refused: write "
            "into a real folder."
        )
    return folder


def atomic_write(
    target: Path, write, *, within: Path | None = None, mode: int | None = None
) -> Path:
    """Call ``write(temporary path)`` and move the file into place (see the module
    docstring); ``within``: the folder the target must lie in; ``mode``: its permissions
    (default ``mkstemp``'s: the owner's only)."""
    target = Path(target)
    if within is not None:  # the folder is resolved; the name itself is replaced, not followed
        if target.name in ("", ".", ".."):
            raise AnalysisError(f"Refused to write {target}: not a file name.")
        inside(within, target.parent)
        real_folder(target.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(
    target: Path, text: str, *, within: Path | None = None, mode: int | None = None
) -> Path:
    """Write UTF-8 text atomically (:func:`atomic_write`)."""
    return atomic_write(
        target,
        lambda tmp: Path(tmp).write_text(text, encoding="utf-8"),
        within=within,
        mode=mode,
    )


def write_private(target: Path, text: str) -> Path:
    """Write ``text`` readable by its owner only (0600), atomically (logs of real data)."""
    return atomic_write_text(target, text, mode=0o600)
