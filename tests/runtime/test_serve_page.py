"""The operator page of `irreid-edge serve` in a real headless browser (Debian's chromium driven by
Playwright): pick a probe, see the rank list, the expected top-1 thumbnail first and loaded."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_fixtures import make_good_gallery, make_model_dir, save_crop

pytest.importorskip("fastapi", reason="serve needs the `serve` extra: pip install 'irreid-edge[serve]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (extra `dev`)")

from serve_fixtures import Server, running_server  # noqa: E402

CHROMIUM = os.environ.get("IRREID_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _wait(page: object, js: str, timeout: float = 20.0) -> None:
    """Poll ``js`` (a function expression) until it returns true. Not page.wait_for_function: that
    evaluates its predicate with eval(), which the page's CSP (no 'unsafe-eval') forbids."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(js):  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, f"timed out waiting for {js}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    tmp = tmp_path_factory.mktemp("page")
    model = make_model_dir(tmp / "model")
    make_good_gallery(tmp / "gallery", 16)
    with running_server(model, tmp / "gallery", token="page-token", log_dir=tmp) as s:
        yield s, tmp


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; "
                    "scripts/apt-packages.txt)")
def test_pick_a_probe_and_see_the_top1_thumbnail(served: tuple[Server, Path]) -> None:
    server, tmp = served
    probe = save_crop(tmp / "probe.png", seed=77, gray=True)
    status, want = server.request("POST", "/match?modality=ir&top_k=5", probe.read_bytes())
    assert status == 200
    top1 = want["results"][0]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            violations: list[str] = []
            page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
            answer = page.goto(server.url + "/")
            assert answer is not None and "script-src 'sha256-" in answer.headers["content-security-policy"]
            page.fill("#token", "page-token")
            page.select_option("#modality", "ir")
            page.fill("#topk", "5")
            page.set_input_files("#file", str(probe))  # as if picked: the page searches at once
            _wait(page, "() => document.querySelectorAll('#results .hit').length === 5")
            first = page.locator("#results .hit").first
            assert first.get_attribute("data-path") == top1["path"]
            assert f"d={top1['distance']:.4f}" in first.inner_text()
            _wait(page, "() => { const i = document.querySelector('#results .hit img');"
                        " return !!(i && i.complete && i.naturalWidth > 0); }")
            size = page.evaluate("() => { const i = document.querySelector('#results .hit img');"
                                 " return [i.naturalWidth, i.naturalHeight]; }")
            assert size == [32, 64]  # the gallery crop itself (make_good_gallery saves 64 x 32 crops)
            assert "5 of 16 gallery crops" in page.inner_text("#status")
            shot = os.environ.get("IRREID_PAGE_SCREENSHOT")
            page.screenshot(path=shot or str(tmp / "page.png"), full_page=True)
            # a wrong token is reported on the page, not a blank list
            page.fill("#token", "wrong")
            page.click("#search")
            _wait(page, "() => document.querySelector('#status').className === 'error'")
            assert "401" in page.inner_text("#status")
            assert violations == []  # the page runs whole under its own CSP (inline script and style by hash)
        finally:
            browser.close()
