"""The product as users run it: `dagster dev` (webserver + daemon) on 127.0.0.1 in its own process group, with a
DAGSTER_HOME made by `python -m orchestration.instance` and its own workspace; polled over its GraphQL API;
plus headless Chromium (Debian's chromium + chromedriver, through Selenium) on its UI.

Every wait that times out raises with what a person would look at next: the tail of the dagster dev log
(webserver, daemon, sensor ticks) and the status of every run.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from orchestration.resources import REPO_ROOT

LOCATION = "orchestration.definitions"  # `-m orchestration.definitions`: the code location's name
REPOSITORY = "__repository__"           # the one repository of a @dg.definitions module
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}

RUN_FIELDS = "runId jobName status creationTime startTime endTime tags { key value }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser_missing() -> str | None:
    """Why the UI cannot be driven here, or None."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "chromium / chromedriver are not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium Python package is not installed"
    return None


class DagsterDev:
    """One running `dagster dev`; `url`, `graphql()`, run and tick queries, `wait()` with diagnostics."""

    def __init__(self, home: Path, workspace: Path, log_file: Path, profile: str = "tiny"):
        self.home, self.workspace, self.log_file, self.profile = home, workspace, log_file, profile
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.env = {**os.environ, "DAGSTER_HOME": str(home), "MMCL_WORKSPACE": str(workspace),
                    "MMCL_PROFILE": profile, "DAGSTER_DISABLE_TELEMETRY": "1", "DVC_NO_ANALYTICS": "1",
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

    # -- process ---------------------------------------------------------------------------------------------
    def start(self, timeout: float = 240) -> None:
        # the instance is made the way a user makes it: the documented command, not a Python call
        subprocess.run([sys.executable, "-m", "orchestration.instance", str(self.home)], cwd=REPO_ROOT,
                       env=self.env, check=True, capture_output=True, text=True)
        log = open(self.log_file, "w")  # noqa: SIM115 -- the child writes to it until stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(self.port), "-m", LOCATION],
            cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.wait(self._serving, timeout, "dagster dev to serve its GraphQL API and load the code location")

    def _serving(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"dagster dev exited with {self.process.returncode}\n{self.diagnostics()}")
        try:
            data = self.graphql("{ workspaceOrError { __typename ... on Workspace { locationEntries { name "
                                "locationOrLoadError { __typename } } } } }")
        except OSError:
            return False
        entries = data["workspaceOrError"].get("locationEntries") or []
        loaded = [e for e in entries if e["name"] == LOCATION]
        if loaded and loaded[0]["locationOrLoadError"] and \
                loaded[0]["locationOrLoadError"]["__typename"] == "PythonError":
            raise AssertionError(f"the code location failed to load\n{self.diagnostics()}")
        return bool(loaded and loaded[0]["locationOrLoadError"])

    def stop(self) -> None:
        """End the whole process group (webserver, daemon, code server, run workers, training subprocesses)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):  # run workers that outlived the webserver
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.process = None

    # -- GraphQL ---------------------------------------------------------------------------------------------
    def graphql(self, query: str, variables: dict[str, Any] | None = None, timeout: float = 30) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
        if answer.get("errors"):
            raise AssertionError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def runs(self, job: str | None = None, tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Runs, newest first, each with `tags` as a dict."""
        run_filter: dict[str, Any] = {}
        if job:
            run_filter["pipelineName"] = job
        if tags:
            run_filter["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        data = self.graphql(f"query($f: RunsFilter) {{ runsOrError(filter: $f) {{ __typename "
                            f"... on Runs {{ results {{ {RUN_FIELDS} }} }} ... on PythonError {{ message }} }} }}",
                            {"f": run_filter})["runsOrError"]
        if data["__typename"] != "Runs":
            raise AssertionError(f"runsOrError: {data}")
        return [{**r, "tags": {t["key"]: t["value"] for t in r["tags"]}} for r in data["results"]]

    def run(self, run_id: str) -> dict[str, Any]:
        data = self.graphql(f"query($id: ID!) {{ runOrError(runId: $id) {{ __typename ... on Run {{ {RUN_FIELDS} "
                            f"}} }} }}", {"id": run_id})["runOrError"]
        if data["__typename"] != "Run":
            raise AssertionError(f"run {run_id}: {data}")
        return {**data, "tags": {t["key"]: t["value"] for t in data["tags"]}}

    def messages(self, run_id: str) -> list[str]:
        """The run's event log as one line per event: type, step and message (failures with their error)."""
        query = """query($id: ID!) { logsForRun(runId: $id) { __typename ... on EventConnection { events {
            __typename ... on MessageEvent { message stepKey level }
            ... on ExecutionStepFailureEvent { error { message } }
            ... on RunFailureEvent { pipelineName } } } ... on PythonError { message } } }"""
        data = self.graphql(query, {"id": run_id})["logsForRun"]
        if data["__typename"] != "EventConnection":
            return [f"logsForRun: {data}"]
        lines = []
        for e in data["events"]:
            error = (e.get("error") or {}).get("message", "")
            lines.append(f"{e['__typename']} [{e.get('stepKey') or '-'}] {e.get('message', '')} {error}".rstrip())
        return lines

    def materializations(self, run_id: str) -> dict[str, dict[str, str]]:
        """{asset: {metadata label: text}} of the run's materialisations (the scalar and text entries)."""
        query = """query($id: ID!) { runOrError(runId: $id) { ... on Run { assetMaterializations { assetKey { path }
            metadataEntries { label ... on TextMetadataEntry { text } ... on FloatMetadataEntry { floatValue }
            ... on IntMetadataEntry { intValue } ... on PathMetadataEntry { path } } } } } }"""
        found: dict[str, dict[str, str]] = {}
        for m in self.graphql(query, {"id": run_id})["runOrError"].get("assetMaterializations", []):
            entries = {e["label"]: str(next((e[k] for k in ("text", "floatValue", "intValue", "path") if k in e), ""))
                       for e in m["metadataEntries"]}
            found["/".join(m["assetKey"]["path"])] = entries
        return found

    def ticks(self, sensor: str, limit: int = 20) -> list[dict[str, Any]]:
        """The sensor's latest ticks, newest first (status, skip reason, runs, cursor, error)."""
        query = """query($s: SensorSelector!, $n: Int) { sensorOrError(sensorSelector: $s) { __typename
            ... on Sensor { sensorState { status ticks(limit: $n) { id status timestamp skipReason runIds cursor
            error { message } } } } ... on PythonError { message } } }"""
        data = self.graphql(query, {"s": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
                                          "sensorName": sensor}, "n": limit})["sensorOrError"]
        if data["__typename"] != "Sensor":
            return [{"error": data}]
        return data["sensorState"]["ticks"]

    def check_executions(self, asset: str, check: str, limit: int = 10) -> list[dict[str, Any]]:
        query = """query($k: AssetKeyInput!, $c: String!, $n: Int!) { assetCheckExecutions(assetKey: $k,
            checkName: $c, limit: $n) { id runId status evaluation { success severity description } } }"""
        return self.graphql(query, {"k": {"path": [asset]}, "c": check, "n": limit})["assetCheckExecutions"]

    def launch(self, job: str, run_config: dict[str, Any], tags: dict[str, str] | None = None) -> str:
        """Launch a job as the Launchpad does (launchPipelineExecution); returns the run id."""
        query = """mutation($p: ExecutionParams!) { launchPipelineExecution(executionParams: $p) { __typename
            ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
            ... on RunConfigValidationInvalid { errors { message } } ... on InvalidSubsetError { message } } }"""
        params = {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job},
                  "runConfigData": run_config, "mode": "default",
                  "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}}
        data = self.graphql(query, {"p": params})["launchPipelineExecution"]
        if data["__typename"] != "LaunchRunSuccess":
            raise AssertionError(f"launching {job}: {data}")
        return data["run"]["runId"]

    # -- waiting ---------------------------------------------------------------------------------------------
    def wait(self, predicate: Callable[[], Any], timeout: float, what: str, every: float = 2.0) -> Any:
        """Poll `predicate` until it returns a truthy value; on timeout fail with the diagnostics."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.diagnostics()}")
            time.sleep(every)

    def wait_finished(self, run_id: str, timeout: float) -> dict[str, Any]:
        run = self.wait(lambda: (r := self.run(run_id))["status"] in FINISHED and r, timeout,
                        f"run {run_id} to finish", every=3)
        return run

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no dagster dev log: {exc})"

    def diagnostics(self) -> str:
        """The dagster dev log tail, every run's status and the two sensors' latest ticks."""
        parts = [f"--- dagster dev log ({self.log_file}), last lines ---", self.log_tail()]
        try:
            parts.append("--- runs (newest first) ---")
            for r in self.runs():
                trigger = {k: v for k, v in r["tags"].items() if k.startswith(("mmcl/", "dagster/sensor",
                                                                                 "dagster/schedule", "dagster/auto"))}
                parts.append(f"{r['runId']} {r['jobName']} {r['status']} {trigger}")
            for sensor in ("new_drop_sensor", "drift_retrain_sensor"):
                parts.append(f"--- {sensor} ticks (newest first) ---")
                for t in self.ticks(sensor, 8):
                    parts.append(f"{t.get('status')} runs={t.get('runIds')} skip={t.get('skipReason')!r} "
                                 f"cursor={t.get('cursor')!r} error={(t.get('error') or {}).get('message', '')[:300]}")
        except (OSError, AssertionError) as exc:
            parts.append(f"(GraphQL unavailable: {exc})")
        return "\n".join(parts)


@contextlib.contextmanager
def dagster_dev(home: Path, workspace: Path, log_file: Path, profile: str = "tiny") -> Iterator[DagsterDev]:
    """A started DagsterDev; its process group always ends, even when starting fails."""
    dev = DagsterDev(home, workspace, log_file, profile)
    try:
        dev.start()
        yield dev
    finally:
        dev.stop()


@contextlib.contextmanager
def chromium(width: int = 1600, height: int = 1000):
    """Headless Chromium through Debian's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def click_button(browser, label: str) -> bool:
    """Click the visible, enabled button labelled `label` (in the page's JS: React re-renders make element
    handles go stale); False if there is none."""
    return browser.execute_script(
        "const b = Array.from(document.querySelectorAll('button')).find("
        "  x => x.innerText.trim() === arguments[0] && x.offsetParent !== null && !x.disabled);"
        "if (b) { b.click(); return true; } return false;", label)


def page_text(browser) -> str:
    from selenium.common.exceptions import WebDriverException

    try:
        return browser.find_element("tag name", "body").text
    except WebDriverException:  # a page between two renders has no body yet: no text
        return ""
