"""The search page in a real browser: Debian's chromium (Playwright), the real app under uvicorn, a real store."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, make_settings

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium: apt-get install -y chromium"),
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
API_KEY = "browser-key-51c2"
PERSON, HELD_OUT = "John_Simm", "000310_00470511.jpg"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Two enrolled people and a group photo, served with an API key by uvicorn on a free port."""
    from facesearch.serve.api import create_app
    from tests.integration.test_api import index_into, serving

    root = tmp_path_factory.mktemp("browser")
    photos = root / "photos"
    for person in (PERSON, "John_Salley"):
        (photos / person).mkdir(parents=True)
        for src in sorted(p for p in (SAMPLES / "johns" / person).glob("*.jpg") if p.name != HELD_OUT)[:4]:
            shutil.copy(src, photos / person / src.name)
    shutil.copy(SAMPLES / "group_photos" / "sample3.jpg", photos / "group.jpg")
    settings = make_settings(root, api={"api_key": API_KEY})
    index_into(settings, [photos / PERSON, photos / "John_Salley"], [photos / "group.jpg"])
    with serving(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(TIMEOUT_MS)
        yield context
        context.close()


@pytest.fixture
def page(browser_context) -> Iterator[object]:
    """A new tab: its sessionStorage (the API key) starts empty."""
    tab = browser_context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    tab.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def enter_api_key(page, key: str) -> None:
    field = page.get_by_test_id("api-key")
    if not field.is_visible():  # the panel is folded until needed
        page.get_by_test_id("key-panel").locator("summary").click()
    field.fill(key)
    page.get_by_role("button", name="Use").click()


def test_search_shows_face_boxes_and_matches(page, base_url: str, test_output: Path):
    page.goto(base_url + "/")
    enter_api_key(page, API_KEY)
    page.get_by_test_id("status").filter(has_text="faces in").wait_for()

    page.get_by_test_id("file-input").set_input_files(str(SAMPLES / "johns" / PERSON / HELD_OUT))
    matches = page.get_by_test_id("match")
    matches.first.wait_for()

    assert page.get_by_test_id("match-identity").first.inner_text() == PERSON
    assert matches.count() == 10
    assert page.get_by_test_id("error").is_hidden()
    boxes = page.get_by_test_id("face-box")
    assert boxes.count() == 1 and boxes.first.is_visible()
    box, photo = boxes.first.bounding_box(), page.get_by_test_id("query-image").bounding_box()
    assert box["width"] > 20 and box["height"] > 20
    assert photo["x"] - 1 <= box["x"] and box["x"] + box["width"] <= photo["x"] + photo["width"] + 1
    assert photo["y"] - 1 <= box["y"] and box["y"] + box["height"] <= photo["y"] + photo["height"] + 1
    assert float(page.get_by_test_id("match-distance").first.inner_text()) < 0.42
    assert page.get_by_test_id("match-file").first.inner_text().endswith(".jpg")

    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=match-thumb]')].every(i => i.complete && i.naturalWidth > 0)"
    )
    page.screenshot(path=str(test_output / "search_page.png"), full_page=True)


def test_group_photo_gets_a_box_and_gallery_per_face(page, base_url: str, test_output: Path):
    page.goto(base_url + "/")
    enter_api_key(page, API_KEY)
    page.get_by_test_id("k").fill("4")
    page.get_by_test_id("file-input").set_input_files(str(SAMPLES / "group_photos" / "sample3.jpg"))
    page.get_by_test_id("face-result").first.wait_for()
    faces = page.get_by_test_id("face-result").count()
    assert faces >= 3 and page.get_by_test_id("face-box").count() == faces
    assert page.get_by_test_id("match").count() == 4 * faces
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=match-thumb]')].every(i => i.complete && i.naturalWidth > 0)"
    )
    page.screenshot(path=str(test_output / "search_page_group.png"), full_page=True)


def test_errors_are_shown_on_the_page(page, base_url: str, tmp_path: Path, test_output: Path):
    page.goto(base_url + "/")
    page.get_by_test_id("file-input").set_input_files(str(SAMPLES / "johns" / PERSON / HELD_OUT))
    error = page.get_by_test_id("error")
    error.wait_for()
    assert "API key" in error.inner_text() and page.get_by_test_id("api-key").is_visible()

    enter_api_key(page, API_KEY)  # the refused search runs again with the key
    page.get_by_test_id("match").first.wait_for()
    assert error.is_hidden() and page.get_by_test_id("match-identity").first.inner_text() == PERSON

    notes = tmp_path / "notes.jpg"
    notes.write_text("this is not a photo\n")
    page.get_by_test_id("file-input").set_input_files(str(notes))
    page.get_by_test_id("error").filter(has_text="cannot be used as a photo").wait_for()
    assert page.get_by_test_id("match").count() == 0

    page.get_by_test_id("file-input").set_input_files(str(SAMPLES / "voc_groups" / "dogs.jpg"))
    page.get_by_test_id("error").filter(has_text="No face was found").wait_for()
    page.screenshot(path=str(test_output / "search_page_error.png"))


def test_api_docs_render_offline(page, base_url: str, test_output: Path):
    """Swagger UI at /docs comes from the app itself (swagger-ui-bundle), not a CDN."""
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(base_url + "/docs")
    page.locator(".opblock-summary-path", has_text="/search").first.wait_for()
    assert page.locator(".opblock").count() >= 5
    page.screenshot(path=str(test_output / "api_docs.png"))
    outside = [url for url in requested if not url.startswith(base_url)]
    assert outside == [], f"/docs fetched from outside the app: {outside}"
