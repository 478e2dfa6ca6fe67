"""End to end in a real browser: `bench leaderboard` serves a seeded home on 127.0.0.1 and
headless Debian Chromium (driven by playwright, never its own downloaded browser) checks
that the main table, a heatmap and a cell drill-down render with the expected values.
Screenshots go to the test's tmp folder and to <repo>/test-output/leaderboard/."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from leaderboard_seed import TINY, seed_home
from test_leaderboard import PAPER_TITLE, TINY_TITLE

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = REPO / "test-output" / "leaderboard"
expect.set_options(timeout=60_000)  # the other xdist worker keeps the second core busy: pages render slower


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serve(home: Path, tmp: Path):
    """`bench leaderboard` on `home` at a free port; always stopped (its own process group)."""
    port = _free_port()
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "leaderboard", "--port", str(port), "--home", str(home)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 40
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.flush()
                raise AssertionError("leaderboard did not start:\n" + (tmp / "server.log").read_text()[-3000:])
            time.sleep(0.2)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.fixture
def server(tmp_path):
    """The seeded home (hand-made records of two protocol groups) served."""
    home = tmp_path / "home"
    recs = seed_home(home)
    with _serve(home, tmp_path) as url:
        yield url, recs, tmp_path


@contextlib.contextmanager
def _browser():
    assert Path(CHROMIUM).is_file(), "Debian chromium missing: run scripts/setup_browser.sh"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2600})
            page.set_default_timeout(30000)
            yield page
        finally:
            browser.close()


def _shot(page, tmp: Path, name: str) -> None:
    path = tmp / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / path.name)


def _table_text(page, index: int) -> str:
    return page.locator("[data-testid=stTable]").nth(index).inner_text()


def test_leaderboard_in_chromium(server):
    url, recs, tmp = server
    with _browser() as page:
        # (1) main page: per group a readable title, the per-defense ranking (worst case over purifier x
        # attack, with its CI) and the table of all cells; groups never ranked together
        page.goto(f"{url}/?page=main")
        expect(page.get_by_text(TINY_TITLE)).to_be_visible()
        expect(page.get_by_text(PAPER_TITLE)).to_be_visible()
        expect(page.get_by_text(f"protocol group {TINY} · profile tiny", exact=False)).to_be_visible()
        expect(page.locator("[data-testid=stTable]")).to_have_count(3)  # tiny ranking, tiny cells, paper cells
        ranking = page.locator("[data-testid=stTable]").nth(0)
        top = [c.strip() for c in ranking.locator("tbody tr").nth(0).locator("td,th").all_inner_texts()]
        assert "aspl" in top and "0.2 [0.18, 0.22]" in top and "unavailable" in top, top  # LPIPS: no weights offline
        tiny, paper = _table_text(page, 1), _table_text(page, 2)
        rows = [r.split("\t") for r in tiny.splitlines() if r.strip()]
        first = [c.strip() for c in page.locator("[data-testid=stTable]").nth(1).locator("tbody tr").nth(0).locator("td,th").all_inner_texts()]
        assert first[:4] == ["aspl", "none", "dreambooth", "1"] and "0.15" in first, first
        assert "ism[dlib] ↓" in tiny and "unavailable" in tiny and "0.05" not in tiny, rows
        assert "0.05" in paper and "0.15" not in paper
        _shot(page, tmp, "main")

        # (2) heatmap defense x purifier (ISM under dreambooth, tiny group by default)
        page.goto(f"{url}/?page=heatmap")
        expect(page.get_by_text("Robustness heatmap: defense × purifier")).to_be_visible()
        heat = page.locator("[data-testid=stTable]").first
        expect(heat).to_contain_text("0.25")
        cells = {}
        for tr in heat.locator("tbody tr").all():
            texts = [t.strip() for t in tr.locator("td,th").all_inner_texts()]
            cells[texts[0]] = texts[1:]
        header = [t.strip() for t in heat.locator("thead th").all_inner_texts()][1:]
        assert header == ["none", "jpeg"], header  # the no-purifier baseline first
        assert list(cells) == ["none", "advdm", "aspl"]
        assert cells["advdm"] == ["0.25", "0.4"] and cells["aspl"] == ["0.15", "0.35"] and cells["none"] == ["0.55", "0.55"]
        expect(page.locator("[data-testid=stVegaLiteChart]")).to_have_count(1)
        _shot(page, tmp, "heatmap")

        # (3) image grid: one identity and seed, one column per defense (none first)
        page.goto(f"{url}/?page=grid")
        expect(page.get_by_text("Image grid: one identity, one seed, every defense")).to_be_visible()
        expect(page.locator("[data-testid=stImage] img")).to_have_count(3 * 5)  # clean, protected, |Δ|, 2 generated
        expect(page.get_by_text("max 4/255").first).to_be_visible()
        _shot(page, tmp, "grid")

        # (4) drill-down of one cell: images, perturbation, per-identity values, protocol
        key = recs[f"{TINY}/id1/advdm/jpeg"]["cell_key"]
        page.goto(f"{url}/?page=cell&cell={key}")
        expect(page.get_by_text("Per identity (same group, defense, purifier and attack)")).to_be_visible()
        expect(page.get_by_text(f"cell {key}", exact=False).first).to_be_visible()
        expect(page.get_by_text("view00.png: max 4/255")).to_be_visible()
        images = page.locator("[data-testid=stImage] img")
        expect(images).to_have_count(2 + 2 + 2 + 2 + 2)  # clean, protected, perturbation, purified, generated
        assert page.evaluate("Array.from(document.querySelectorAll('[data-testid=stImage] img')).every(i => i.complete && i.naturalWidth > 0)")
        per_id = page.locator("[data-testid=stTable]").filter(has_text="identity").last.inner_text()
        assert "id1" in per_id and "id2" in per_id and "0.45" in per_id and "0.35" in per_id
        expect(page.locator("[data-testid=stJson]").first).to_contain_text("advdm")
        _shot(page, tmp, "drilldown")

