"""The report's HTML page and its templates: Markdown rendered with markdown-it-py into
``templates/report.html.j2``, one self-contained page (inline CSS, figures as base64 ``data:``
URIs, no scripts, nothing fetched). Pure: strings and bytes in, strings out."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import PurePath
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from llm_energy.report.sentences import fmt_num


@cache
def report_templates() -> Environment:
    """The report's jinja2 templates (package data); `num` formats a number as the text does."""
    env = Environment(
        loader=PackageLoader("llm_energy.report", "templates"),
        autoescape=select_autoescape(["html.j2"]),  # HTML escaped, Markdown left as written
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=StrictUndefined,
    )
    env.filters["num"] = fmt_num
    return env


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure_html(alt: str, name: str, png: bytes | None) -> str:
    uri = png_data_uri(png) if png is not None else None
    fig = {"alt": alt, "name": name, "uri": uri}
    return report_templates().get_template("figure.html.j2").render(fig=fig)


def _render_image(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    """An image whose alt text, file stem or path names a supplied figure is embedded as a
    ``data:`` URI; any other image becomes a note, so the page never fetches one."""
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env)
    src = str(token.attrGet("src") or "")
    figures: Mapping[str, bytes] = env["figures"]
    for name in (alt, PurePath(src).stem if src else "", src):
        if name and name in figures:
            env["used"].add(name)
            return _figure_html(alt, name, figures[name])
    return _figure_html(alt or src, "", None)


def _no_output(*_: Any) -> str:
    return ""


@cache
def _markdown() -> MarkdownIt:
    # GFM-like (pipe tables, strikethrough); raw HTML is escaped and bare URLs stay text
    md = MarkdownIt("gfm-like", {"html": False, "linkify": False, "xhtmlOut": False})
    md.add_render_rule("image", _render_image)
    # links keep their text only: nothing on the page points or reaches outside it
    md.add_render_rule("link_open", _no_output)
    md.add_render_rule("link_close", _no_output)
    # a wide table scrolls in its own box (report.css) instead of being cut off
    md.add_render_rule("table_open", lambda *_: '<div class="table-scroll"><table>\n')
    md.add_render_rule("table_close", lambda *_: "</table></div>\n")
    return md


def markdown_to_html(
    text: str, figures: Mapping[str, bytes] | None = None, used: set[str] | None = None
) -> str:
    """Markdown (CommonMark, pipe tables) → HTML with ``figures`` embedded (names to ``used``)."""
    return _render(text, figures, used)[0]


def _render(
    text: str, figures: Mapping[str, bytes] | None, used: set[str] | None
) -> tuple[str, str | None]:
    """:func:`markdown_to_html` and the first level-1 heading's text, from one parse."""
    md = _markdown()
    env = {"figures": figures or {}, "used": used if used is not None else set()}
    tokens = md.parse(text, env)
    opens = (i for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h1")
    h1 = next((tokens[i + 1].content.strip() for i in opens), None)
    for i, token in enumerate(tokens):
        children = token.children or []
        if token.type == "inline" and len(children) == 1 and children[0].type == "image":
            # a figure stands on its own, not inside a paragraph
            tokens[i - 1].hidden = tokens[i + 1].hidden = True
    return md.renderer.render(tokens, md.options, env), h1


def build_html(
    markdown_text_or_sections: str | Mapping[str, str] | Sequence[str],
    figures: Mapping[str, bytes] | None = None,
    *,
    title: str | None = None,
) -> str:
    """One self-contained HTML page (inline CSS, figures as base64 ``data:`` URIs, nothing
    fetched) from markdown text, section title → markdown, or chunks. Images whose alt text or
    file stem names a figure are embedded in place; the rest go under "Figures"."""
    figures = dict(figures or {})
    if isinstance(markdown_text_or_sections, str):
        text = markdown_text_or_sections
    elif isinstance(markdown_text_or_sections, Mapping):
        text = "\n\n".join(f"## {k}\n\n{v}" for k, v in markdown_text_or_sections.items())
    else:
        text = "\n\n".join(markdown_text_or_sections)
    used: set[str] = set()
    body, h1 = _render(text, figures, used)
    appended = [
        {"alt": n, "name": n, "uri": png_data_uri(png)}
        for n, png in figures.items()
        if n not in used
    ]
    title = title if title is not None else h1 or "LLM energy report"
    page = report_templates().get_template("report.html.j2")
    return page.render(title=title, body=body, appended=appended)
