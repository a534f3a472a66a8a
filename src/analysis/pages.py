"""HTML pages from Jinja2 templates (``analysis/templates/``), every value escaped.

One environment for every page: autoescape on (a value from a file, a manifest or a table
can never become markup), undefined names refused, no template read from anywhere but the
package. Markdown (methods in words) is rendered by mistune with raw HTML escaped.
"""

from __future__ import annotations

from functools import cache


@cache
def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("analysis", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **context) -> str:
    """The page ``template`` (a file of ``analysis/templates/``) with ``context``."""
    return _environment().get_template(template).render(**context)


def markdown_html(text: str) -> str:
    """Markdown as HTML (tables too); raw HTML in the text is escaped, not passed on."""
    import mistune
    from markupsafe import Markup

    return Markup(mistune.create_markdown(escape=True, plugins=["table"])(text))
