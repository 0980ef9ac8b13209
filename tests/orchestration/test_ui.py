"""A real browser on the real UI: `dagster dev` on 127.0.0.1 (own process group), headless Chromium through
Selenium. The new-drop sensor (run by dagster dev's daemon) ingests the landed drops; the browser shows the asset
graph, opens the retrain job's Launchpad, edits its config and launches it; the run succeeds. Screenshots go
to $MMCL_TEST_ARTIFACTS/orchestration_ui (default test-artifacts/ in the repository).

Needs the `chromium` and `chromium-driver` system packages and the `selenium` Python package: skipped on a
workstation without them, a failure in CI (CI=1).
"""

import os
import time
from pathlib import Path

import pytest
import yaml

from orchestration.resources import REPO_ROOT
from tests.orchestration.conftest import land_clean_drops
from tests.orchestration.dagster_dev import browser_missing, chromium, click_button, dagster_dev

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


@pytest.fixture(scope="module")
def ui(tmp_path_factory, dagster_home, workspace):
    reason = browser_missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide the browser for the UI test: {reason}")
        pytest.skip(reason)
    land_clean_drops(workspace, 1, 2)
    with dagster_dev(dagster_home, workspace, tmp_path_factory.mktemp("dagster_dev") / "dev.log") as dev:
        yield dev


@pytest.fixture(scope="module")
def ingested(ui):
    """The new-drop sensor's ingest run of the landed drops, finished: what a retrain trains on."""
    run = ui.wait(lambda: next((r for r in ui.runs("ingest_job") if r["status"] in ("SUCCESS", "FAILURE")), None),
                  420, "the new-drop sensor's ingest run", every=3)
    return run


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("MMCL_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts")) / "orchestration_ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _dismiss_popup(browser) -> None:
    click_button(browser, "Skip")  # the community sign-up dialog, when it shows


def test_sensor_ingests_the_landed_drops(ingested):
    assert ingested["status"] == "SUCCESS" and ingested["tags"].get("dagster/sensor_name") == "new_drop_sensor"


def test_asset_graph_is_shown(ui, browser, artifacts):
    browser.get(f"{ui.url}/asset-groups")
    text = ui.wait(lambda: browser.find_element("tag name", "body").text, 60, "the lineage page")
    ui.wait(lambda: all(g in browser.find_element("tag name", "body").text
                        for g in ("data", "training", "evaluation", "monitoring")), 60, "the asset groups")
    _dismiss_popup(browser)
    browser.save_screenshot(str(artifacts / "1_asset_groups.png"))
    assert "Global asset lineage" in browser.title or "lineage" in text.lower()
    # each group's lineage: its assets as graph nodes, with their neighbours in the other groups
    for group, assets in GROUPS.items():
        browser.get(f"{ui.url}/locations/orchestration.definitions/asset-groups/{group}/lineage")
        ui.wait(lambda assets=assets: all(a in browser.find_element("tag name", "body").text for a in assets), 90,
                f"the {group} asset graph")
        _dismiss_popup(browser)
        time.sleep(1)
        browser.save_screenshot(str(artifacts / f"1_asset_graph_{group}.png"))


def test_retrain_from_the_launchpad_with_edited_config(ui, ingested, browser, artifacts):
    browser.get(f"{ui.url}/locations/orchestration.definitions/jobs/retrain_job/playground")
    ui.wait(lambda: browser.execute_script("var c = document.querySelector('.CodeMirror');"
                                           "return c && c.CodeMirror ? c.CodeMirror.getValue() : null;"),
            90, "the Launchpad config editor")
    _dismiss_popup(browser)
    browser.execute_script("document.querySelector('.CodeMirror').CodeMirror.setValue(arguments[0]);", EDITED_CONFIG)
    time.sleep(2)  # the Launchpad validates the config against the schema before enabling Launch
    browser.save_screenshot(str(artifacts / "2_launchpad_edited.png"))
    ui.wait(lambda: click_button(browser, "Launch Run"), 60, "a valid config (Launch Run enabled)")
    run_url = ui.wait(lambda: "/runs/" in browser.current_url and browser.current_url, 60, "the run page")
    run_id = run_url.rstrip("/").split("/runs/")[1].split("?")[0]
    run = ui.wait_finished(run_id, 600)
    browser.refresh()
    time.sleep(5)
    browser.save_screenshot(str(artifacts / "3_retrain_run.png"))
    assert run["status"] == "SUCCESS", f"retrain run {run_id} ended {run['status']}"
    stored = ui.graphql("query($id: ID!) { runOrError(runId: $id) { ... on Run { runConfigYaml } } }", {"id": run_id})
    config = yaml.safe_load(stored["runOrError"]["runConfigYaml"])["ops"]["trained_model"]["config"]
    assert config["epochs"] == 2 and config["lr"] == 0.002 and config["overrides"] == ["train.warmup_steps=1"]
