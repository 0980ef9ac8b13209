"""`mmcl serve` with a real HTTP client (urllib) and a real headless Chromium (selenium) on 127.0.0.1.

Screenshots go to $MMCL_TEST_ARTIFACTS/retrieval_ui (default test-artifacts/ in the repository). The browser
test needs the `chromium` + `chromium-driver` system packages and selenium: skipped without them on a
workstation, a failure in CI (CI=1), as tests/orchestration/test_ui.py.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from mmcl.index.search import ChampionSearcher
from mmcl.index.serve import serve_in_thread
from mmcl.index.store import index_dir, set_current_dataset
from mmcl.registry_models import ModelRegistry
from tests.mmcl.index.conftest import MD5_1

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def server(tmp_path_factory, run_dirs, built):
    tmp = tmp_path_factory.mktemp("serve")
    registry = ModelRegistry(tmp / "models")
    for model_id, run in run_dirs.items():
        registry.register(model_id, run, dataset_md5=MD5_1)
        shutil.copytree(built[model_id], index_dir(tmp / "idx", model_id, MD5_1))
    set_current_dataset(tmp / "idx", MD5_1)
    registry.promote("tiny-a")
    httpd, url = serve_in_thread(ChampionSearcher(registry.root, tmp / "idx"))
    yield url, registry
    httpd.shutdown()
    httpd.server_close()


def _call(url: str, data: bytes | None = None) -> tuple[int, dict | bytes, str]:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, body, kind = response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        status, body, kind = exc.code, exc.read(), exc.headers["Content-Type"]
    return status, (json.loads(body) if kind == "application/json" else body), kind


def test_json_api_answers_text_image_and_audio(server, small_data):
    url, _ = server
    status, info, _ = _call(f"{url}/api/info")
    assert status == 200 and info["champion"] == "tiny-a" and info["counts"] == {"image": 12, "audio": 12, "text": 60}
    status, reply, _ = _call(f"{url}/api/search?" + urllib.parse.urlencode({"text": "a dog runs", "k": 3}))
    assert status == 200 and [h["rank"] for h in reply["results"]["image"]] == [1, 2, 3]
    scores = [h["score"] for h in reply["results"]["text"]]
    assert scores == sorted(scores, reverse=True)
    image = sorted(small_data.rglob("*.jpg"))[2]
    status, reply, _ = _call(f"{url}/api/search?modality=image&k=2&in=image&name={image.name}", image.read_bytes())
    assert status == 200 and set(reply["results"]) == {"image"}
    assert reply["results"]["image"][0]["image_id"] == image.stem
    clip = sorted(small_data.rglob("*.mp3"))[0]
    status, reply, _ = _call(f"{url}/api/search?modality=audio&k=1&in=audio&name={clip.name}", clip.read_bytes())
    assert status == 200 and reply["results"]["audio"][0]["path"] == str(clip)
    row = reply["results"]["audio"][0]["row"]
    status, body, kind = _call(f"{url}/media/audio/{row}")
    assert status == 200 and kind == "audio/mpeg" and body == clip.read_bytes()


def test_bad_queries_get_a_clear_4xx(server, tmp_path):
    url, _ = server
    cases = [
        (f"{url}/api/search?text=%20%20", None, 400, "text query is empty"),
        (f"{url}/api/search?modality=video", b"x", 400, "unknown upload modality 'video'"),
        (f"{url}/api/search?modality=image&name=notes.jpg", b"this is not a picture", 415,
         "the uploaded file: cannot decode image"),
        (f"{url}/api/search?modality=audio&name=clip.mp3", b"\x00" * 64, 415, "the uploaded file: cannot decode audio"),
        (f"{url}/api/search?text=dog&k=abc", None, 400, "k must be an integer"),
        (f"{url}/api/search?text=dog&in=video", None, 400, "the index has no video items"),
        (f"{url}/media/image/999", None, 404, "no image item 999"),
        (f"{url}/nothing", None, 404, "no such page"),
    ]
    for target, data, status, message in cases:
        got, reply, _ = _call(target, data)
        assert (got, message in reply["error"]) == (status, True), (target, got, reply)


def test_promotion_and_rollback_are_served_without_restart(server):
    url, registry = server
    registry.promote("tiny-b", force=True, by="test", reason="a second champion with its own index")
    try:
        assert _call(f"{url}/api/info")[1]["champion"] == "tiny-b"
        assert _call(f"{url}/api/search?text=dog&k=1")[1]["champion"] == "tiny-b"
    finally:
        registry.rollback()
    assert _call(f"{url}/api/info")[1]["champion"] == "tiny-a"


def _browser_missing() -> str | None:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "chromium / chromedriver are not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium Python package is not installed"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = _browser_missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide the browser for the search UI test: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_page_shows_thumbnails_players_and_errors_in_chromium(server, browser, small_data):
    url, _ = server
    artifacts = Path(os.environ.get("MMCL_TEST_ARTIFACTS", REPO / "test-artifacts")) / "retrieval_ui"
    artifacts.mkdir(parents=True, exist_ok=True)
    browser.get(url + "/")
    _wait(lambda: "champion tiny-a" in browser.execute_script("return document.getElementById('info').innerText"),
          60, "the index info")
    browser.find_element("id", "text").send_keys("a dog runs on the beach")
    browser.find_element("id", "text-search").click()
    _wait(lambda: browser.find_elements("css selector", ".hit[data-modality=image] img"), 60, "image results")
    loaded = "return Array.from(document.querySelectorAll('.hit img')).every(i => i.complete && i.naturalWidth > 0)"
    _wait(lambda: browser.execute_script(loaded), 60, "the thumbnails to load")
    assert len(browser.find_elements("css selector", ".hit[data-modality=image]")) == 5
    assert len(browser.find_elements("css selector", ".hit[data-modality=audio] audio")) == 5
    browser.save_screenshot(str(artifacts / "1_text_query.png"))

    image = sorted(small_data.rglob("*.jpg"))[4]
    browser.find_element("id", "file").send_keys(str(image))
    browser.find_element("id", "file-search").click()
    first_image = "const h = document.querySelector('.hit[data-modality=image]'); return h ? h.innerText : ''"
    _wait(lambda: image.stem in browser.execute_script(first_image), 60, "the uploaded image as the top image result")
    _wait(lambda: browser.execute_script(loaded), 60, "the thumbnails to load")
    browser.save_screenshot(str(artifacts / "2_image_query.png"))

    browser.find_element("id", "text").clear()
    browser.find_element("id", "text-search").click()
    _wait(lambda: "400: the text query is empty" in browser.execute_script("return document.getElementById('error')"
                                                                          ".innerText"), 30, "the error message")
    browser.save_screenshot(str(artifacts / "3_empty_query_error.png"))
