"""A real headless browser opens the report: it renders, shows every figure, fetches nothing."""

from __future__ import annotations

import base64
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from analysis_fixtures import sweep_requests
from analysis_settings import headline_metrics, recommend_cap, summarize
from llm_energy.analysis.tradeoff import savings_headline
from llm_energy.report.figure_style import figure_png_bytes
from llm_energy.report.figures import j_per_token_by_task
from llm_energy.report.html import build_html
from llm_energy.report.markdown import build_markdown

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WIDTH, HEIGHT = 1000, 1400
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.img_src: list[str] = []
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "action", "data") and value:
                self.refs.append(value)
                if tag == "img" and name == "src":
                    self.img_src.append(value)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def report_html() -> str:
    req = sweep_requests((None, 1400.0), n_per_freq=6, energy_kind="simulated", tasks=("qa",))
    summary = summarize(req)
    recs = recommend_cap(req, latency_budget_pct=10.0)
    head = headline_metrics(summary, req)
    head["tradeoff"] = savings_headline(recs)
    png = figure_png_bytes(j_per_token_by_task(summary), dpi=40)
    md = build_markdown(
        summary, {}, recs, head, {"j_per_token_by_task": "figures/j_per_token_by_task.png"}, None
    )
    return build_html(md, {"j_per_token_by_task": png})


def test_images_are_inline_pngs_and_nothing_is_fetched(report_html: str) -> None:
    refs = _Refs()
    refs.feed(report_html)
    assert refs.img_src  # the fixture's figure is there
    for src in refs.img_src:
        assert src.startswith("data:image/png;base64,"), src[:40]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        width, height = _png_size(data)
        assert width > 0 and height > 0
    urls = refs.refs + re.findall(r"url\(\s*['\"]?([^'\")]+)", report_html)
    assert not [u for u in urls if re.match(r"\s*(https?:)?//", u, re.I)]
    assert not re.search(r"(src|href)\s*=\s*['\"]?\s*https?:", report_html, re.I)
    assert "<script" not in report_html.lower()


def test_headless_browser_screenshot(report_html: str, tmp_path: Path) -> None:
    browser = _browser()
    if browser is None:
        pytest.skip(f"no headless browser on PATH ({', '.join(BROWSERS)})")
    page = tmp_path / "report.html"
    page.write_text(report_html, encoding="utf-8")
    shot = tmp_path / "report.png"
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--screenshot={shot}",
        page.as_uri(),
    ]
    try:
        subprocess.run(cmd, capture_output=True, timeout=120, check=False, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail("the headless browser did not finish within 120 s")
    assert shot.is_file(), "the browser wrote no screenshot"
    assert _png_size(shot.read_bytes()) == (WIDTH, HEIGHT)
