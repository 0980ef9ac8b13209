"""A real browser on the real UI: `dagster dev` on 127.0.0.1 (own process group), headless Chromium through
Selenium. The new-drop sensor (run by dagster dev's daemon) ingests the landed drops; the browser shows the asset
graph, opens the retrain job's Launchpad, edits its config and launches it; the run succeeds. Screenshots go
to $MMCL_TEST_ARTIFACTS/orchestration_ui (default test-artifacts/ in the repository).

Needs the `chromium` and `chromium-driver` system packages and the `selenium` Python package: skipped on a
workstation without them, a failure in CI (CI=1).
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

from orchestration.resources import REPO_ROOT
from tests.orchestration.conftest import land_clean_drops

pytestmark = pytest.mark.slow
GROUPS = {"data": ("raw_drop", "validated_drop", "dataset_version"),
          "training": ("teacher_scores", "trained_model"),
          "evaluation": ("sts_eval", "senteval_eval", "retrieval_eval", "promoted_model"),
          "monitoring": ("reference_embeddings", "embedding_drift")}
EDITED_CONFIG = """ops:
  trained_model:
    config:
      epochs: 2
      lr: 0.002
      overrides: ["train.warmup_steps=1"]
"""


def _missing() -> str | None:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "chromium / chromedriver are not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium Python package is not installed"
    return None


def _wait(predicate, timeout: float, what: str, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def ui(tmp_path_factory, dagster_home, workspace):
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide the browser for the UI test: {reason}")
        pytest.skip(reason)
    from orchestration.instance import ensure_dagster_home

    ensure_dagster_home(dagster_home)
    land_clean_drops(workspace, 1, 2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "MMCL_WORKSPACE": str(workspace), "MMCL_PROFILE": "tiny"}
    log = open(tmp_path_factory.mktemp("dagster_dev") / "dev.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port), "-m",
                               "orchestration.definitions"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log,
                              start_new_session=True)
    try:
        _wait(lambda: _http_ok(port), 180, "dagster dev to serve")
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def _http_ok(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("MMCL_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts")) / "orchestration_ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _runs(dagster_home: Path, job: str):
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        return instance.get_runs(filters=dg.RunsFilter(job_name=job))


def _finished(dagster_home: Path, job: str, run_id: str | None = None):
    runs = [r for r in _runs(dagster_home, job) if run_id is None or r.run_id == run_id]
    return next((r for r in runs if r.is_finished), None)


def _click_button(browser, label: str) -> bool:
    """Click the visible, enabled button labelled `label` (in the page's JS: React re-renders make element
    handles go stale); False if there is none."""
    return browser.execute_script(
        "const b = Array.from(document.querySelectorAll('button')).find("
        "  x => x.innerText.trim() === arguments[0] && x.offsetParent !== null && !x.disabled);"
        "if (b) { b.click(); return true; } return false;", label)


def _dismiss_popup(browser) -> None:
    _click_button(browser, "Skip")  # the community sign-up dialog, when it shows


def test_sensor_ingests_the_landed_drops(ui, dagster_home):
    run = _wait(lambda: _finished(dagster_home, "ingest_job"), 420, "the new-drop sensor's ingest run", every=3)
    assert run.is_success and run.tags.get("dagster/sensor_name") == "new_drop_sensor"


def test_asset_graph_is_shown(ui, browser, artifacts):
    browser.get(f"{ui}/asset-groups")
    text = _wait(lambda: browser.find_element("tag name", "body").text, 60, "the lineage page")
    _wait(lambda: all(g in browser.find_element("tag name", "body").text
                      for g in ("data", "training", "evaluation", "monitoring")), 60, "the asset groups")
    _dismiss_popup(browser)
    browser.save_screenshot(str(artifacts / "1_asset_groups.png"))
    assert "Global asset lineage" in browser.title or "lineage" in text.lower()
    # each group's lineage: its assets as graph nodes, with their neighbours in the other groups
    for group, assets in GROUPS.items():
        browser.get(f"{ui}/locations/orchestration.definitions/asset-groups/{group}/lineage")
        _wait(lambda assets=assets: all(a in browser.find_element("tag name", "body").text for a in assets), 90,
              f"the {group} asset graph")
        _dismiss_popup(browser)
        time.sleep(1)
        browser.save_screenshot(str(artifacts / f"1_asset_graph_{group}.png"))


def test_retrain_from_the_launchpad_with_edited_config(ui, browser, artifacts, dagster_home):
    browser.get(f"{ui}/locations/orchestration.definitions/jobs/retrain_job/playground")
    _wait(lambda: browser.execute_script("var c = document.querySelector('.CodeMirror');"
                                         "return c && c.CodeMirror ? c.CodeMirror.getValue() : null;"),
          90, "the Launchpad config editor")
    _dismiss_popup(browser)
    browser.execute_script("document.querySelector('.CodeMirror').CodeMirror.setValue(arguments[0]);", EDITED_CONFIG)
    time.sleep(2)  # the Launchpad validates the config against the schema before enabling Launch
    browser.save_screenshot(str(artifacts / "2_launchpad_edited.png"))
    _wait(lambda: _click_button(browser, "Launch Run"), 60, "a valid config (Launch Run enabled)")
    run_url = _wait(lambda: "/runs/" in browser.current_url and browser.current_url, 60, "the run page")
    run_id = run_url.rstrip("/").split("/runs/")[1].split("?")[0]
    run = _wait(lambda: _finished(dagster_home, "retrain_job", run_id), 600, "the retrain run", every=5)
    browser.refresh()
    time.sleep(5)
    browser.save_screenshot(str(artifacts / "3_retrain_run.png"))
    assert run.is_success, f"retrain run {run_id} ended {run.status}"
    config = run.run_config["ops"]["trained_model"]["config"]
    assert config["epochs"] == 2 and config["lr"] == 0.002 and config["overrides"] == ["train.warmup_steps=1"]
