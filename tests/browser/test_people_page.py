"""The People view and the same-person fold in a real browser: Debian's chromium (Playwright), the real app, a real store."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.test_search_page import CHROMIUM, browser_context, enter_api_key, page  # noqa: F401  (fixtures)
from tests.conftest import SAMPLES, make_settings

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium: apt-get install -y chromium"),
]

API_KEY = "people-key-0b1d"
PEOPLE = ("John_Simm", "John_Salley")
HELD_OUT = "000310_00470511.jpg"  # a John_Simm photo kept out of the store
PER_PERSON = 4


@pytest.fixture(scope="module")
def people_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Four photos of two johns (no identities) and a group photo, clustered, served with an API key."""
    from facesearch.serve.api import create_app
    from facesearch.serve.people_cluster import cluster_people
    from facesearch.store import FaceStore
    from tests.integration.test_api import index_into, serving

    root = tmp_path_factory.mktemp("people-page")
    photos = root / "photos"
    for person in PEOPLE:
        (photos / person).mkdir(parents=True)
        for src in sorted(p for p in (SAMPLES / "johns" / person).glob("*.jpg") if p.name != HELD_OUT)[:PER_PERSON]:
            shutil.copy(src, photos / person / src.name)
    shutil.copy(SAMPLES / "group_photos" / "sample3.jpg", photos / "group.jpg")
    settings = make_settings(root, api={"api_key": API_KEY})
    index_into(settings, [], [photos])
    with FaceStore(settings.milvus) as store:
        assert cluster_people(store, settings, store.resolve(settings.milvus.alias))["persons"] == len(PEOPLE)
    with serving(create_app(settings)) as url:
        yield url


def open_page(page, url: str) -> None:  # noqa: F811
    page.goto(url + "/")
    enter_api_key(page, API_KEY)


def test_people_view_shows_renames_and_opens_a_person(page, people_url: str, test_output: Path):  # noqa: F811
    open_page(page, people_url)
    people = page.get_by_test_id("person")
    people.nth(len(PEOPLE) - 1).wait_for()
    assert people.count() == len(PEOPLE)
    assert [page.get_by_test_id("person-count").nth(i).inner_text() for i in range(len(PEOPLE))] == [f"{PER_PERSON} faces"] * 2
    first = page.get_by_test_id("person-name").first
    assert first.input_value().startswith("Person ")
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=person-thumb]')].every(i => i.complete && i.naturalWidth > 0)")

    first.fill("Simm or Salley")
    first.press("Enter")
    page.locator("[data-testid=person-name][data-saved=true]").wait_for()
    page.reload()
    enter_api_key(page, API_KEY)
    page.locator("[data-testid=person-name]").first.wait_for()
    names = [page.get_by_test_id("person-name").nth(i).input_value() for i in range(len(PEOPLE))]
    assert "Simm or Salley" in names, "the rename did not reach the store"

    page.get_by_test_id("person-thumb").first.click()
    page.get_by_test_id("person-photo").nth(PER_PERSON - 1).wait_for()
    assert page.get_by_test_id("person-photo").count() == PER_PERSON
    assert page.get_by_test_id("person-photos-title").inner_text().endswith(f"{PER_PERSON} photos")
    page.screenshot(path=str(test_output / "people_view.png"), full_page=True)


def test_strangers_are_folded_below_the_same_person(page, people_url: str, test_output: Path):  # noqa: F811
    open_page(page, people_url)
    page.get_by_test_id("k").fill("10")
    page.get_by_test_id("file-input").set_input_files(str(SAMPLES / "johns" / "John_Simm" / HELD_OUT))
    page.get_by_test_id("match").first.wait_for()
    same = page.locator("[data-testid=match][data-same-person=true]")
    folded = page.locator("[data-testid=not-same-person] [data-testid=match]")
    assert same.count() == PER_PERSON and all(same.nth(i).is_visible() for i in range(same.count()))
    assert folded.count() == 10 - PER_PERSON and not folded.first.is_visible()
    distances = [float(folded.nth(i).get_by_test_id("match-distance").text_content()) for i in range(folded.count())]
    assert min(distances) > 0.42, "a match within the threshold was folded as a stranger"
    fold = page.get_by_test_id("not-same-person")
    assert "Not the same person (nearest faces)" in fold.locator("summary").inner_text()
    fold.locator("summary").click()
    assert folded.first.is_visible()
    page.screenshot(path=str(test_output / "search_page_same_person.png"), full_page=True)
