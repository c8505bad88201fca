"""The search page in a real headless Chromium, against the real server in a subprocess.

``sampling-matters serve`` runs on a free loopback port over an index of the glyph
fixture; selenium drives the system's Chromium (Debian's ``chromium`` and
``chromium-driver`` packages; ``.ci/run`` installs them) to upload an image through the
file input, read the grid, and click "random item". With ``SAMPLING_MATTERS_SCREENSHOT``
set to a path, the page is saved there as a PNG after the random item's search (that is
how ``docs/images/serve.png`` is made).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("faiss")
pytest.importorskip("selenium")

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from sampling_matters.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"
K = 8
WAIT = 60  # seconds for the page to answer

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or not Path(CHROMEDRIVER).is_file(),
    reason="needs the system's Chromium and chromedriver: apt-get install chromium chromium-driver",
)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(glyph_folder, tiny_settings, tmp_path_factory):
    """The base URL of ``sampling-matters serve`` over an index of the glyph test split."""
    out = tmp_path_factory.mktemp("browser")
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in tiny_settings.items() if k != "data"]
    spec = f"folder:{glyph_folder}"
    assert main(["train", "--data", spec, *flags, "--steps", "20", "--out", str(out / "run")]) == 0
    index = ["index", str(out / "run"), "--data", spec, "--split", "test", "--quiet"]
    assert main([*index, "--out", str(out / "index")]) == 0
    port, log = free_port(), (out / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "sampling_matters", "serve", str(out / "index"),
         "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until_listening(port, process, out / "server.log")
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def wait_until_listening(port, process, log):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"the server did not listen within {WAIT} s: {log.read_text()}")


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1200,1000"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for_results(driver, count):
    """The tiles, once the page has drawn ``count`` of them with their images loaded."""

    def drawn(d):
        state = d.execute_script("return document.body.dataset.state")
        assert state != "error", d.find_element(By.ID, "error").text
        tiles = d.find_elements(By.CSS_SELECTOR, "#grid .tile")
        loaded = d.execute_script(
            "return [...document.querySelectorAll('#grid img, #query-image')]"
            ".every((img) => img.complete && img.naturalWidth > 0)"
        )
        return tiles if state == "done" and len(tiles) == count and loaded else False

    return WebDriverWait(driver, WAIT).until(drawn)


def read_tiles(tiles):
    """Per tile: (id, label, distance, marked as the query's class)."""
    rows = []
    for tile in tiles:
        label = tile.find_element(By.CSS_SELECTOR, ".label").text
        distance = tile.find_element(By.CSS_SELECTOR, ".distance").text
        assert label.startswith("label ") and distance.startswith("d = "), (label, distance)
        rows.append(
            (
                int(tile.get_attribute("data-id")),
                int(label.removeprefix("label ")),
                float(distance.removeprefix("d = ")),
                "same" in tile.get_attribute("class").split(),
            )
        )
    return rows


def test_upload_then_random_item(server, browser, glyph_folder):
    browser.get(server)
    WebDriverWait(browser, WAIT).until(lambda d: "items" in d.find_element(By.ID, "health").text)
    k_input = browser.find_element(By.ID, "k")
    k_input.clear()
    k_input.send_keys(str(K))

    query = sorted(glyph_folder.glob("class12/*.png"))[0]  # a test class (the second half)
    browser.find_element(By.ID, "file").send_keys(str(query))
    uploaded = read_tiles(wait_for_results(browser, K))
    distances = [d for _, _, d, _ in uploaded]
    assert distances == sorted(distances) and distances[0] < 0.01  # the file is indexed
    assert not any(marked for *_, marked in uploaded)  # an upload's class is unknown
    assert "query.png" not in browser.find_element(By.ID, "query-caption").text
    assert query.name in browser.find_element(By.ID, "query-caption").text

    browser.find_element(By.ID, "random").click()
    WebDriverWait(browser, WAIT).until(
        lambda d: d.find_element(By.ID, "query-caption").text.startswith("item ")
    )
    tiles = wait_for_results(browser, K)
    caption = browser.find_element(By.ID, "query-caption").text  # "item ID, label L"
    query_id, query_label = (int(part.split()[-1]) for part in caption.split(", "))
    found = read_tiles(tiles)
    assert query_id not in [i for i, *_ in found]  # a search by id leaves the item out
    assert [marked for _, label, _, marked in found] == [
        label == query_label for _, label, _, _ in found
    ]
    title = browser.find_element(By.ID, "results-title").text
    assert title == f"{K} neighbours, {sum(m for *_, m in found)} of the query's class"
    screenshot = os.environ.get("SAMPLING_MATTERS_SCREENSHOT")
    if screenshot:  # the whole page, no more: the window fitted to it
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        height = browser.execute_script(
            "return Math.ceil(document.body.getBoundingClientRect().bottom)"
            " + window.outerHeight - window.innerHeight"
        )
        browser.set_window_size(1200, height)
        assert browser.save_screenshot(screenshot)
