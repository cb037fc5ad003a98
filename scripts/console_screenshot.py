"""Take the README's console screenshot against the real service (SmolLM2, the default editor).

    . .venv/bin/activate && python scripts/console_screenshot.py docs/img/console.png

Starts `factpatch serve` on a fresh data dir (the model comes from FACTPATCH_MODELS_DIR, default
~/.factpatch/models), makes two keys with `factpatch keys create`, submits one edit with the
operator CLI as the editor, a second one from the console as the operator, asks the console the
Eiffel Tower question (current answer beside the base model's), and saves the page as a PNG.
Prints the CLI's tables (for the README) on the way. Needs chromium and chromium-driver.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1500,900", "--hide-scrollbars")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def factpatch(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True,
                         check=True, timeout=600)
    return out.stdout


def wait_ready(url: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise TimeoutError("the service did not become ready")


def browser() -> Any:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*FLAGS, f"--user-data-dir={tempfile.mkdtemp(prefix='fp-shot-')}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))


def type_into(driver: Any, element_id: str, text: str) -> None:
    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(text)


def drive_console(driver: Any, url: str, key: str, out: Path) -> None:
    wait = WebDriverWait(driver, 300, poll_frequency=0.5)
    driver.get(f"{url}/console")
    type_into(driver, "key", key)
    driver.find_element(By.CSS_SELECTOR, "#key-form button").click()
    wait.until(lambda d: "revision 1" in d.find_element(By.ID, "model").text)
    type_into(driver, "edit-prompt", "The Colosseum is located in the city of")
    type_into(driver, "edit-target", "Paris")
    type_into(driver, "edit-subject", "Colosseum")
    type_into(driver, "edit-locality", "The Vatican is located in the city of")
    driver.find_element(By.CSS_SELECTOR, "#edit-form button").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "li[data-status=applied]")) == 2)
    type_into(driver, "ask-prompt", "The Eiffel Tower is located in the city of")
    driver.find_element(By.CSS_SELECTOR, "#ask-form button").click()
    wait.until(lambda d: "…" not in d.find_element(By.ID, "answer-base").text
               and d.find_element(By.ID, "answer-base").text not in ("", "–"))
    time.sleep(1.0)
    driver.save_screenshot(str(out))


def main(out: Path) -> int:
    data = Path(tempfile.mkdtemp(prefix="fp-console-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACTPATCH_")}
    env.update(FACTPATCH_DATA_DIR=str(data), FACTPATCH_PORT=str(port),
               FACTPATCH_MODELS_DIR=os.environ.get("FACTPATCH_MODELS_DIR", str(Path.home() / ".factpatch/models")))
    editor = factpatch(env, "keys", "create", "--name", "eddie", "--role", "editor").strip()
    operator = factpatch(env, "keys", "create", "--name", "olga", "--role", "operator").strip()
    server = subprocess.Popen([sys.executable, "-m", "cli", "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=(data / "serve.log").open("w"))
    driver = None
    try:
        wait_ready(url)
        cli = {**env, "FACTPATCH_URL": url, "FACTPATCH_API_KEY": editor}
        sys.stdout.write(factpatch(cli, "edits", "submit", "--prompt", "The Eiffel Tower is located in the city of",
                                   "--target", "Rome", "--subject", "Eiffel Tower",
                                   "--locality", "The Louvre is located in the city of"))
        driver = browser()
        drive_console(driver, url, operator, out)
        sys.stdout.write(factpatch(cli, "edits", "list") + factpatch(cli, "revisions"))
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(60)
        shutil.rmtree(data, ignore_errors=True)
    sys.stdout.write(f"saved {out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img/console.png")))
