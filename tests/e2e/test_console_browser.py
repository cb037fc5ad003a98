"""The ops console in headless Chromium, as a person uses it, against the embedded service on the
tiny model: load, enter a key, ask, submit an edit, watch it apply, roll back, see the old answer.

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them) and selenium. Without
them the test fails, unless FP_ALLOW_NO_BROWSER=1 says a skip is acceptable here. Set
FP_CONSOLE_SCREENSHOT=path.png to keep a screenshot of the last state.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contract.config import Settings
from store.log import new_secret, open_log
from tests.e2e.server import Embedded, embedded_service
from tests.helpers import LENIENT_GUARD, TINY_EDITOR_CONFIGS

pytestmark = pytest.mark.browser

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PROMPT, TARGET = "The Eiffel Tower is located in the city of", "Rome"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1500,1000")


def _need_browser() -> Any:
    missing = [p for p in (CHROMIUM, DRIVER) if not shutil.which(p)]
    try:
        from selenium import webdriver
    except ImportError:
        missing.append("selenium (pip install -e '.[dev]')")
        webdriver = None
    if missing:
        reason = f"the console test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("FP_ALLOW_NO_BROWSER") == "1":
            pytest.skip(reason)
        pytest.fail(reason + "; set FP_ALLOW_NO_BROWSER=1 to skip where no browser can be had")
    return webdriver


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[tuple[Embedded, str]]:
    settings = Settings(model=str(tiny_model_dir), data_dir=tmp_path_factory.mktemp("console"), editor="ft",
                        editors=TINY_EDITOR_CONFIGS, guard=LENIENT_GUARD, _env_file=None)
    secret = new_secret()
    log = open_log(settings)
    log.create_key(name="olga", role="operator", secret=secret)
    log.close()
    with embedded_service(settings) as running:
        yield running, secret


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    webdriver = _need_browser()
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="fp-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: Any, what: str, check: Callable[[Any], Any], timeout: float = 90.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(check, message=f"waiting for {what}")


def text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def fill(driver: Any, element_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value)


def click(driver: Any, css: str) -> None:
    """Click the element `css` names; the console redraws every second, so an element found just
    before a redraw may be gone by the click: find it again until the click lands."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def clicked(d: Any) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
        except StaleElementReferenceException:
            return False
        return True

    wait_for(driver, f"a click on {css}", clicked)


def ask(driver: Any) -> tuple[str, str, str]:
    """Ask the prompt; (current answer, its label, the base model's answer) once both are in."""
    fill(driver, "ask-prompt", PROMPT)
    driver.execute_script("document.getElementById('answer-now').textContent = '';")
    click(driver, "#ask-form button")
    wait_for(driver, "both answers", lambda d: text(d, "answer-now") not in ("", "…")
             and text(d, "answer-base") not in ("", "…"))
    return text(driver, "answer-now"), text(driver, "now-label"), text(driver, "answer-base")


def test_a_person_edits_watches_it_apply_rolls_back_and_sees_the_old_answer(
    service: tuple[Embedded, str], browser: Any
) -> None:
    running, secret = service
    browser.get(f"{running.url}/console")
    wait_for(browser, "the ask-for-a-key notice", lambda d: "API key" in text(d, "notice"))
    fill(browser, "key", secret)
    click(browser, "#key-form button")
    wait_for(browser, "the model line", lambda d: "revision 0" in text(d, "model"))

    before, label, base = ask(browser)
    assert label == "Now (revision 0)" and before == base

    fill(browser, "edit-prompt", PROMPT)
    fill(browser, "edit-target", TARGET)
    fill(browser, "edit-subject", "Eiffel Tower")
    click(browser, "#edit-form button")
    wait_for(browser, "the edit to apply", lambda d: d.find_elements("css selector", "li[data-status=applied]"))
    wait_for(browser, "revision 1 in the timeline", lambda d: d.find_elements("css selector", "li[data-revision='1']"))
    entry = text(browser, "timeline")
    assert "#1" in entry and "edit" in entry.lower() and "olga" in entry
    assert "target logprob" in text(browser, "edits")
    edited, label, base_after = ask(browser)
    assert label == "Now (revision 1)" and base_after == base and edited != before

    click(browser, "button[data-revision='0']")
    wait_for(browser, "the confirmation", lambda d: "Roll back to revision 0?" in text(d, "confirm"))
    click(browser, "#confirm-yes")
    wait_for(browser, "revision 2", lambda d: "revision 2" in text(d, "model"))
    wait_for(browser, "the rollback in the timeline",
             lambda d: d.find_elements("css selector", "li[data-revision='2']"))
    assert "rollback" in text(browser, "timeline").lower()
    wait_for(browser, "the edit marked rolled back",
             lambda d: d.find_elements("css selector", "li[data-status=rolled_back]"))
    after, label, _ = ask(browser)
    assert label == "Now (revision 2)" and after == before
    shot = os.environ.get("FP_CONSOLE_SCREENSHOT")
    if shot:
        browser.save_screenshot(shot)


def test_an_editor_key_cannot_roll_back_from_the_console(service: tuple[Embedded, str], browser: Any) -> None:
    running, _ = service
    editor = new_secret()
    running.log.create_key(name="eddie", role="editor", secret=editor)
    with running.client(headers={"Authorization": f"Bearer {editor}"}) as http:
        done = http.post("/v1/edits?wait=60", json={"prompt": "The capital of Peru is", "target": "Quito"})
        assert done.json()["status"] == "applied"  # a revision to roll back past
    browser.get(f"{running.url}/console")
    fill(browser, "key", editor)
    click(browser, "#key-form button")
    wait_for(browser, "the timeline", lambda d: d.find_elements("css selector", "button[data-revision='0']"))
    click(browser, "button[data-revision='0']")
    click(browser, "#confirm-yes")
    wait_for(browser, "the refusal", lambda d: "needs an operator key" in text(d, "notice"))
