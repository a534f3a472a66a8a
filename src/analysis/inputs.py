"""Files from others are data: the one place where names and YAML from outside are read.

Researchers run folders that other people send (batch, parameter and grid files, mapping
templates, calibrations). Everything read here is parsed and checked before anything else
sees it, so a new command that reads a name or a YAML file uses these functions, never its
own:

- :func:`full_match` checks a name against a pattern as a whole (``re.fullmatch``: a
  trailing newline or a NUL never passes, as it would with ``^...$``);
- :func:`read_yaml` / :func:`parse_yaml` are the one YAML reader: safe types only, aliases
  refused (a 1 KB file of nested aliases expands to billions of nodes), at most
  ``MAX_YAML_BYTES`` and ``MAX_YAML_DEPTH`` levels, a message naming the file.

SQL quoting has its own single home (:func:`analysis.engines.sql_literal` and
:func:`analysis.engines.sql_identifier`); writes go through :mod:`analysis.outputs.writer`;
a manifest is checked by :mod:`analysis.batch.checked`.
"""

from __future__ import annotations

import re
from pathlib import Path

from analysis.credentials import refuse_passwords_in
from analysis.errors import AnalysisError, nearest_name

MAX_YAML_BYTES = 1_000_000
"""Largest YAML file read (bytes); the project's own are under 5 KB."""
MAX_YAML_DEPTH = 20
"""Deepest nesting of mappings and lists accepted in a YAML file."""


def full_match(pattern: re.Pattern | str, text) -> bool:
    """Whether ``text`` is a string matching ``pattern`` as a whole (no trailing newline,
    no NUL)."""
    return isinstance(text, str) and re.fullmatch(pattern, text) is not None


def shown(text, limit: int = 40) -> str:
    """``text`` for a message: its first ``limit`` characters, control characters escaped."""
    return str(text)[:limit].encode("unicode_escape").decode("ascii")


def parse_yaml(text: str, source: str):
    """Parse YAML ``text`` (from ``source``, named in messages) with safe types only;
    refuses aliases, documents deeper than ``MAX_YAML_DEPTH`` and text over
    ``MAX_YAML_BYTES``."""
    import yaml

    if len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise AnalysisError(
            f"{source}: larger than {MAX_YAML_BYTES:,} bytes; a parameter, batch or mapping "
            "file is a few KB. Nothing was read."
        )
    if "\x00" in text:
        raise AnalysisError(f"{source}: holds a NUL character; it is not a YAML text file.")
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise AnalysisError(
                    f"{source}, line {line}: YAML aliases (*{shown(event.anchor)}) are not "
                    "accepted (they can expand a small file into billions of values); write "
                    "the values out."
                )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise AnalysisError(
                        f"{source}, line {line}: nested more than {MAX_YAML_DEPTH} levels deep."
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise AnalysisError(f"{source} is not valid YAML: {exc}") from None


def read_yaml(path: str | Path, what: str = "YAML file"):
    """Read the YAML file ``path`` (``what`` it is, for messages) through
    :func:`parse_yaml`; a missing, oversized, non-UTF-8 or invalid file is refused by name."""
    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"{what} {path} does not exist (or is not a file).")
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise AnalysisError(
            f"{what} {path}: {size:,} bytes, larger than the {MAX_YAML_BYTES:,} accepted."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AnalysisError(f"{what} {path} is not UTF-8 text (byte {exc.start}).") from None
    return parse_yaml(text, f"{what} {path}")


def read_yaml_mapping(path: str | Path, what: str, allowed=None, holds: str = "") -> dict:
    """The mapping a YAML file of parameters, a batch, a grid or a mapping holds (an empty
    file: none): read by :func:`read_yaml`, refused by name when it is not a mapping, when
    it holds a password (:func:`analysis.credentials.refuse_passwords_in`) or, with
    ``allowed``, a key outside it (the nearest allowed key named). ``holds``: what the
    mapping holds, for the message."""
    path = Path(path)
    raw = read_yaml(path, what)
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise AnalysisError(f"{what} {path} must hold a mapping{f' ({holds})' if holds else ''}.")
    refuse_passwords_in(raw, f"{what} {path}")
    if allowed is not None:
        unknown = [k for k in raw if k not in allowed]
        if unknown:
            named = []
            for k in unknown:
                hint = nearest_name(str(k), sorted(allowed))
                named.append(repr(k) + (f" (did you mean {hint!r}?)" if hint else ""))
            raise AnalysisError(
                f"{what} {path}: unknown key(s) {', '.join(named)}; expected "
                f"{', '.join(sorted(allowed))}."
            )
    return raw
