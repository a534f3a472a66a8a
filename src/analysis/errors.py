"""The project's one exception type: its message says what is wrong and how to fix it."""


class AnalysisError(Exception):
    """Bad input (data, parameters, command-line values) or a failed step.

    The message is written for a researcher: it names the file, table, column, row or
    parameter at fault and what was expected. Commands print it without a traceback.
    """


def nearest_name(name: str, candidates) -> str | None:
    """The candidate closest to ``name`` (for 'did you mean' hints), or None."""
    import difflib

    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return found[0] if found else None
