"""A rater session in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium through uvicorn on loopback, on the bundled demo results.

Checks that the videos decode and play in sync, that the form cannot be sent incomplete, that
radios work by keyboard, the progress bar, the votes in the database, and the thank-you page.
Saves a screenshot: ``docs/images/study_page.png`` when ``ASCCL_UPDATE_SCREENSHOT=1``, else
under the test's tmp folder. Without Chromium the test is skipped, or fails when ``CI`` is set.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from tests.study.conftest import LoopbackServer

from asccl.evaluation.results import make_demo_results
from asccl.study.commands import create, invite, make_app, open_store

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "images" / "study_page.png"
INSTALL_HINT = (
    "the browser test needs Chromium, its driver and Selenium: "
    "apt-get install -y chromium chromium-driver && pip install selenium"
)


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; {INSTALL_HINT}")
    pytest.skip(f"{reason}; {INSTALL_HINT}")


@pytest.fixture
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ModuleNotFoundError:
        _missing("selenium is not installed")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        _missing(f"chromium ({chromium}) or chromedriver ({driver_path}) not found")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--mute-audio",
                "--autoplay-policy=no-user-gesture-required", "--window-size=1000,1200",
                "--hide-scrollbars", "--force-device-scale-factor=1"]:  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(driver, script: str, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    state = driver.execute_script(
        "return Array.from(document.querySelectorAll('video')).map(v => [v.id, v.currentTime,"
        " v.duration, v.paused, v.ended, v.seeking, v.readyState])"
    )
    raise AssertionError(f"timed out waiting for {what} ({driver.current_url}; videos: "
                         f"{state}; page: {driver.page_source[:1500]})")  # fmt: skip


VIDEOS = "Array.from(document.querySelectorAll('video.sync'))"


@pytest.mark.slow  # ~15 s on 2 cores (Chromium start-up, demo results)
def test_rater_session_in_chromium(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    results = make_demo_results(REPO / "demo_data" / "MEAD", tmp_path / "results",
                                sentences=("001",), frame_folder_frames=40)  # fmt: skip
    toml = create(results, tmp_path / "study" / "study.toml", items_per_emotion=1,
                  attention_checks=1)  # fmt: skip
    (token,) = [link.rsplit("/", 1)[1] for link in invite(toml, 1)]
    store = open_store(toml)
    app = make_app(toml)
    n_items = len(app.handlers.items)
    assert n_items == 4  # angry, happy, sad + one attention check

    with LoopbackServer(app) as server:
        browser.get(f"{server.url}/r/{token}")
        assert "item 1 of 4" in browser.title
        # every video decodes (H.264 MP4; the frame folders were encoded at start-up)
        _wait(browser, f"return {VIDEOS}.every(v => v.readyState >= 2 && v.videoWidth > 0)",
              "the videos to load")  # fmt: skip
        assert browser.execute_script(f"return {VIDEOS}.length") == 4

        # play one: all play; pause one: all pause; seek one: all follow
        browser.execute_script("document.getElementById('video-left').play()")
        _wait(browser, f"return {VIDEOS}.every(v => !v.paused)", "the others to play")
        browser.execute_script("document.getElementById('video-source').pause()")
        _wait(browser, f"return {VIDEOS}.every(v => v.paused)", "all to pause")
        browser.execute_script("document.getElementById('video-right').currentTime = 0.8")
        _wait(browser, f"return {VIDEOS}.every(v => Math.abs(v.currentTime - 0.8) < 0.06)",
              "all to seek")  # fmt: skip
        # the one control bar: play/pause button, seek slider (native controls removed)
        assert browser.execute_script(f"return {VIDEOS}.every(v => !v.controls)")
        browser.find_element(By.ID, "play-all").click()
        _wait(browser, f"return {VIDEOS}.every(v => !v.paused)", "Play")
        browser.find_element(By.ID, "play-all").click()
        _wait(browser, f"return {VIDEOS}.every(v => v.paused)", "Pause")
        browser.execute_script("const s = document.getElementById('seek'); s.value = '500';"
                               "s.dispatchEvent(new Event('input'));")  # fmt: skip
        half = browser.execute_script(f"return Math.max(...{VIDEOS}.map(v => v.duration)) / 2")
        # (a shorter clip stops at its end and does not pull the others back)
        at_half = f"Math.abs(v.currentTime - Math.min({half}, v.duration)) < 0.06"
        _wait(browser, f"return {VIDEOS}.every(v => {at_half})", "the slider to seek all")

        # an incomplete form is not sent (required radios; the server checks too)
        browser.find_element(By.CSS_SELECTOR, "input[name=q_realism][value=left]").click()
        browser.find_element(By.ID, "submit").click()
        time.sleep(0.3)
        assert store.progress(token)["answered"] == 0
        assert browser.find_element(By.ID, "progress").get_attribute("value") == "0"

        clicked = {}
        for n in range(n_items):
            progress = browser.find_element(By.ID, "progress")
            assert progress.get_attribute("value") == str(3 * n)
            assert progress.get_attribute("max") == str(3 * n_items)
            assert f"Item {n + 1} of {n_items}" in browser.find_element(By.ID, "progress-text").text
            item_id = store.next_item(token)
            choices = {"realism": ["left", "right"][n % 2], "emotion": "right",
                       "mouth": ["right", "left"][n % 2]}  # fmt: skip
            # labels are clickable; the last question is answered with the keyboard
            for q in ("realism", "emotion"):
                label = browser.find_element(
                    By.XPATH, f"//input[@name='q_{q}'][@value='{choices[q]}']/parent::label"
                )
                label.click()
            first = browser.find_element(By.CSS_SELECTOR, "input[name=q_mouth][value=left]")
            first.send_keys(Keys.SPACE)
            if choices["mouth"] == "right":
                first.send_keys(Keys.ARROW_RIGHT)
            for q, side in choices.items():
                box = browser.find_element(By.CSS_SELECTOR, f"input[name=q_{q}][value={side}]")
                assert box.is_selected(), (q, side)
            if n == 1:
                _screenshot(browser, tmp_path)
            clicked[item_id] = choices
            browser.find_element(By.ID, "submit").click()
            next_page = (
                "var p = document.getElementById('progress');"
                "return document.readyState === 'complete' && p !== null && "
                f"(document.getElementById('done') !== null || p.value === {3 * (n + 1)});"
            )
            _wait(browser, next_page, "the next page")

        assert browser.find_element(By.ID, "done").is_displayed()

    votes = store.export_votes()
    assert len(votes) == 3 * n_items
    assert {(v["item_id"], v["question"]): v["choice"] for v in votes} == {
        (item, q): side for item, choices in clicked.items() for q, side in choices.items()
    }
    for v in votes:
        left, right = store.assignment(token, v["item_id"])
        assert v["method"] == (left if v["choice"] == "left" else right)


def _screenshot(browser, tmp_path: Path) -> None:
    """The first item with its answers chosen, videos at 0.8 s (a frame with expression)."""
    height, chrome = browser.execute_script(
        "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]"
    )
    browser.set_window_size(1000, height + chrome)
    browser.execute_script(f"{VIDEOS}.forEach(v => {{ v.pause(); v.currentTime = 0.8; }});"
                           "document.activeElement.blur(); window.scrollTo(0, 0);")  # fmt: skip
    _wait(browser, f"return {VIDEOS}.every(v => !v.seeking && v.readyState >= 2)", "frames")
    time.sleep(0.2)  # the clock and slider catch up
    update = os.environ.get("ASCCL_UPDATE_SCREENSHOT") == "1"
    path = SCREENSHOT if update else tmp_path / "study_page.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_browser_fails_on_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium chromium-driver"):
        _missing("chromium not found")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="chromium-driver"):
        _missing("chromium not found")
