"""Write requirements-core.lock: the packages of requirements.lock that the core
dependencies need (pyproject's `dependencies`, no extras), read from the lock's "# via"
annotations; same versions, same order. `make report` installs it; `make env` the whole lock.

Usage: python tools/core_lock.py [--check]   (--check: exit 1 when the file is out of date)
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "analysis (pyproject.toml)"
EXTRAS_OF = {
    # jsonschema's format checkers (its [format-nongpl] extra) come with JupyterLab's
    # jupyter-events; nbformat needs jsonschema alone. Without them no process builds the
    # rfc3987-syntax grammar on import (about 1 s each).
    "jsonschema": {"attrs", "jsonschema-specifications", "referencing", "rpds-py"},
}
"""Packages whose extras the core does not use: parent -> its dependencies without them."""


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def entries(text: str):
    """(name, pin line, its annotation lines, the packages it is there for)."""
    out, cur = [], None
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            cur = [norm(line.split("==")[0].split("[")[0]), line, [], set()]
            out.append(cur)
        elif cur is not None and line.startswith("    #"):
            cur[2].append(line)
            via = line.strip().lstrip("#").strip().removeprefix("via").strip()
            if via:
                cur[3].add(via if via == PROJECT else norm(via))
    return out


def core_lock() -> str:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    roots = {norm(d.split("==")[0].split("[")[0]) for d in meta["dependencies"]}
    found = entries((ROOT / "requirements.lock").read_text())
    core = set(roots)
    changed = True
    while changed:  # a package is core when a core package needs it
        changed = False
        for name, _, _, via in found:
            parents = {v for v in via & core if name in EXTRAS_OF.get(v, {name})}
            if name not in core and parents:
                core.add(name)
                changed = True
    lines = [
        "# The core of requirements.lock (no extras): written by tools/core_lock.py; do not edit."
    ]
    for name, pin, notes, _ in found:
        if name in core:
            lines += [pin, *notes]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    path = ROOT / "requirements-core.lock"
    text = core_lock()
    if "--check" in sys.argv:
        sys.exit(0 if path.exists() and path.read_text() == text else 1)
    path.write_text(text)
    print(f"{path.name}: {sum(1 for x in text.splitlines() if '==' in x)} packages")
