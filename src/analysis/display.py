"""How results print: as an HTML table in a notebook (``_repr_html_``) and as aligned text
in a terminal (``str``), as lifelines' ``print_summary`` does. Every value is escaped."""

from __future__ import annotations

import math
from html import escape


def number(v, decimals: int = 1) -> str:
    """A count as an integer with thousands separators, other numbers with ``decimals``;
    a missing value (withheld under disclosure control) as ``withheld``."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "withheld"
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and decimals == 0):
        return f"{int(v):,}"
    return f"{v:,.{decimals}f}"


def interval(low, high, decimals: int = 1) -> str:
    if low is None or high is None:
        return "withheld"
    return f"{number(low, decimals)}\u2013{number(high, decimals)}"


class Summary:
    """A result with a title, rows of (label, cells...) and notes; subclasses give
    :meth:`summary_rows`."""

    summary_title = ""
    summary_headers: tuple[str, ...] = ()

    def summary_rows(self) -> list[tuple[str, ...]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def summary_notes(self) -> list[str]:
        return []

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{escape(h)}</th>" for h in self.summary_headers)
        body = "".join(
            "<tr>"
            + "".join(
                f'<td style="text-align:{"left" if i == 0 else "right"}">{escape(str(c))}</td>'
                for i, c in enumerate(row)
            )
            + "</tr>"
            for row in self.summary_rows()
        )
        notes = "".join(f"<p><small>{escape(n)}</small></p>" for n in self.summary_notes())
        title = (
            f"<p><strong>{escape(self.summary_title)}</strong></p>" if self.summary_title else ""
        )
        return f"{title}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}"

    def __str__(self) -> str:
        rows = [tuple(self.summary_headers), *[tuple(map(str, r)) for r in self.summary_rows()]]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [self.summary_title] if self.summary_title else []
        for k, r in enumerate(rows):
            lines.append(
                "  ".join(
                    c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)
                )
            )
            if k == 0:
                lines.append("-" * len(lines[-1]))
        lines += self.summary_notes()
        return "\n".join(lines)

    def print_summary(self) -> None:
        print(self)
