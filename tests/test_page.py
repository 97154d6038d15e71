"""The served page at /: posters dropped on it are answered side by side in a real browser
(headless Chromium, driven by Playwright), and the page asks nothing of anyone else."""

from __future__ import annotations

import ast
import csv
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from poster_ml.cli import main
from poster_ml.serving.app import FACTS_PLACEHOLDER, PAGE_POLICY, page_html
from poster_ml.serving.model import IMAGE_SIGNATURES

PAGE = Path(__file__).resolve().parents[1] / "poster_ml" / "serving" / "page.html"


def test_the_page_tells_the_same_image_signatures_the_server_accepts():
    listed = re.search(r"const SIGNATURES = (\[.*?\]\]);", PAGE.read_text(), re.DOTALL)
    assert listed is not None
    signatures = ast.literal_eval(listed.group(1).replace("\n", ""))
    assert {bytes(signature) for signature in signatures} == set(IMAGE_SIGNATURES)


def test_the_page_asks_nothing_of_anyone_else_and_its_facts_cannot_end_their_script():
    page = page_html({"model": "</script><script>alert(1)</script>", "threshold": 0.5})
    assert FACTS_PLACEHOLDER not in page and "</script><script>alert" not in page
    # No script, style sheet, font or image from elsewhere; the policy forbids them too.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "default-src 'none'" in PAGE_POLICY and "connect-src 'self'" in PAGE_POLICY


def chromium() -> str:
    """Debian's Chromium (CI installs it: .ci/run); without it the test is skipped with the
    reason on a laptop, and fails under CI."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("no Chromium under CI (.ci/run installs Debian's chromium)")
        pytest.skip("no Chromium on this machine: apt-get install chromium")
    return path


@pytest.fixture
def served_version(trained_store, tmp_path):
    """Version 1 of poster-ml, registered from the trained store's best variant in a store
    of the test's own, served by `poster-ml serve`: its port."""
    from test_serving import free_port, wait_for_ping

    store, _data = trained_store
    shutil.copyfile(store.removeprefix("sqlite:///"), tmp_path / "mlflow.db")
    own = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", own)
        assert main(["register", "--allow-cpu", "true", "--bootstrap-samples", "50"]) == 0
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "poster_ml.cli",
            "serve",
            "--model",
            "models:/poster-ml/1",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=os.environ | {"MLFLOW_TRACKING_URI": own},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_ping(process, port)
        yield port, MlflowClient(own).get_model_version("poster-ml", "1")
    finally:
        process.terminate()
        process.wait(timeout=30)


def dropped_files(folder: Path, data: Path) -> list[str]:
    """Two posters of the prepared data and a text file, as a person would pick them."""
    posters = sorted((data / "synthetic" / "images").iterdir())[:2]
    notes = folder / "notes.txt"
    notes.write_text("the brief for the poster shoot, not a poster\n")
    return [*map(str, posters), str(notes)]


@pytest.mark.slow
def test_two_posters_and_a_text_file_dropped_on_the_page_give_two_answers_and_one_error(
    served_version, trained_store, tmp_path
):
    sync_api = pytest.importorskip("playwright.sync_api")
    port, version = served_version
    console: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1180, "height": 900})
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: console.append(f"page error: {error}"))
        page.goto(f"http://127.0.0.1:{port}/")
        page.set_input_files("#files", dropped_files(tmp_path, trained_store[1]))
        cards = page.locator(".card")
        sync_api.expect(cards).to_have_count(3)
        sync_api.expect(page.locator(".card .waiting")).to_have_count(0, timeout=60_000)
        about = page.inner_text("#about") + page.inner_text("#limits")
        answers = [card for card in cards.all() if card.locator(".probability").count()]
        probabilities = [
            int(card.locator(".probability").inner_text().split(" %")[0]) for card in answers
        ]
        overlays = [card.locator("img.overlay") for card in answers]
        shown = [overlay.evaluate("image => image.naturalWidth") for overlay in overlays]
        sources = [overlay.get_attribute("src") or "" for overlay in overlays]
        sees = [card.locator(".sees").inner_text() for card in answers]
        errors = [
            card.locator(".error").inner_text()
            for card in cards.all()
            if card.locator(".error").count()
        ]
        # Said here, while the cards can still be read: each card's words on failure.
        assert len(answers) == 2, [card.inner_text() for card in cards.all()]
        with page.expect_download() as download:
            page.click("#csv")
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        page.screenshot(path=tmp_path / "page.png", full_page=True)
        browser.close()
    # Which model, how good, and its limits, before any probability is read.
    assert f"poster-ml version 1 ({version.tags['variant']})" in about
    assert f"test AUC {float(version.tags['test_auc']):.3f}" in about
    assert "Known limits: trained on synthetic posters" in about
    # Two answers, most fresh first, each with its map; the text file's card says why.
    assert len(answers) == 2 and probabilities == sorted(probabilities, reverse=True)
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert all(width > 0 for width in shown)
    assert len(errors) == 1 and "not an image" in errors[0]
    assert [row["file"] for row in rows][-1] == "notes.txt" and rows[-1]["error"]
    assert {row["label"] for row in rows[:2]} <= {"fresh", "rotten"}
    # What the detectors found, in words, and the attributes in the CSV.
    assert all(
        re.search(r"(title \(cyan\): \d+ % of the height, \d+ % of the map|no title found); ", line)
        for line in sees
    ), sees
    assert all("text covers" in line for line in sees), sees
    assert all(rows[index]["text_area"] != "" for index in range(2))
    assert console == []
