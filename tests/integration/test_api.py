"""The HTTP API end to end: real dlib model, real Milvus Lite, FastAPI's TestClient (lifespan runs)."""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from facesearch.errors import ConfigError
from facesearch.serve.api import create_app
from facesearch.serve.api.auth import check_bind_allowed, is_loopback_host
from facesearch.settings import Settings
from tests.conftest import make_settings
from tests.imagefactory import png_bomb_bytes, resized_recompressed

pytestmark = pytest.mark.integration

API_KEY = "test-key-7f3a"
PEOPLE = ("John_Simm", "John_Salley")
PHOTOS_PER_PERSON = 6
HELD_OUT = {"John_Simm": "000310_00470511.jpg", "John_Salley": "000200_02159354.jpg"}
JPEG_MAGIC = b"\xff\xd8\xff"
BASE_URL = "http://localhost"  # an accepted Host (TestClient's default "testserver" is not)


@dataclass(frozen=True)
class Indexed:
    settings: Settings
    photos: Path
    held_out: dict[str, Path]
    gone: Path  # indexed, then deleted from disk by the thumbnail test
    copy_pair: tuple[Path, Path]  # a photo and its resized, recompressed copy


def build_photo_dir(root: Path, johns: Path, samples: Path) -> tuple[Path, dict[str, Path]]:
    """Two enrolled people (identity = folder) plus one group photo; one photo per person held out."""
    photos, held = root / "photos", {}
    for person in PEOPLE:
        (photos / person).mkdir(parents=True)
        candidates = sorted(p for p in (johns / person).glob("*.jpg") if p.name != HELD_OUT[person])
        for src in candidates[:PHOTOS_PER_PERSON]:
            shutil.copy(src, photos / person / src.name)
        held[person] = johns / person / HELD_OUT[person]
    shutil.copy(samples / "group_photos" / "sample3.jpg", photos / "group.jpg")
    return photos, held


def index_into(settings: Settings, people: list[Path], others: list[Path]) -> None:
    """Index ``people/<Name>/*.jpg`` enrolled as <Name>, and ``others`` (files or folders) unlabelled."""
    from facesearch.ingest.indexer import index_jobs, plan_jobs
    from facesearch.serve.serving import encoder_for_store, ingest_collection
    from facesearch.store import FaceStore

    with FaceStore(settings.milvus) as store:
        encoder = encoder_for_store(store, settings)
        collection = ingest_collection(store, settings, encoder)
        enrolled, _ = plan_jobs(people, settings, identity_from_folder=True)
        unlabelled, _ = plan_jobs(others, settings)
        report = index_jobs(enrolled + unlabelled, settings, store, encoder, collection)
        assert report.images_skipped == [] and report.images_indexed == len(enrolled) + len(unlabelled)


@contextmanager
def serving(app: object, startup_timeout_s: float = 60.0) -> Iterator[str]:
    """Run ``app`` under a real uvicorn server on a free 127.0.0.1 port in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", workers=1))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start (see the log above)")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, johns: Path, samples: Path) -> Indexed:
    root = tmp_path_factory.mktemp("api")
    photos, held = build_photo_dir(root, johns, samples)
    gone = photos / "unlabelled" / "savage.jpg"
    gone.parent.mkdir()
    shutil.copy(sorted((johns / "John_Savage").glob("*.jpg"))[0], gone)
    original = min((photos / "John_Salley").glob("*.jpg"))
    resized_recompressed(original, photos / "John_Salley" / "zz_copy_small.jpg", scale=0.6, quality=70)  # a duplicate pair for /duplicates
    settings = make_settings(root, api={"api_key": API_KEY})
    index_into(settings, [photos / person for person in PEOPLE], [photos / "group.jpg", gone])
    return Indexed(settings, photos, held, gone, (original, photos / "John_Salley" / "zz_copy_small.jpg"))


@pytest.fixture(scope="module")
def client(indexed: Indexed) -> Iterator[TestClient]:
    with TestClient(create_app(indexed.settings), base_url=BASE_URL, headers={"X-API-Key": API_KEY}) as c:
        yield c


@pytest.fixture(scope="module")
def empty_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Nothing indexed, no API key, a 50 kB upload limit."""
    settings = make_settings(tmp_path_factory.mktemp("api-empty"), api={"max_upload_bytes": 50_000})
    with TestClient(create_app(settings), base_url=BASE_URL) as c:
        yield c


def upload(path: Path | None = None, data: bytes | None = None, name: str | None = None) -> dict:
    payload = data if data is not None else Path(path).read_bytes()  # type: ignore[arg-type]
    return {"image": (name or (path.name if path else "upload.jpg"), payload, "image/jpeg")}


# -- status ---------------------------------------------------------------------------------------
def test_health_reports_the_serving_collection(client: TestClient, indexed: Indexed):
    doc = client.get("/health", headers={"X-API-Key": ""}).json()
    assert doc["status"] == "ok" and doc["store_reachable"] is True
    assert doc["collection"] == "face_search__dlib_resnet_v1" and doc["encoder"] == "dlib-resnet-v1"
    assert doc["faces"] >= 2 * PHOTOS_PER_PERSON + 3 + 1
    assert doc["milvus_uri"] == indexed.settings.milvus.uri


def test_page_and_openapi_are_served(client: TestClient):
    page = client.get("/", headers={"X-API-Key": ""})
    assert page.status_code == 200 and 'data-testid="file-input"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js", headers={"X-API-Key": ""}).status_code == 200
    docs = client.get("/docs", headers={"X-API-Key": ""})
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text.lower()
    redoc = client.get("/redoc", headers={"X-API-Key": ""})
    assert redoc.status_code == 200 and "/docs-assets/redoc.standalone.js" in redoc.text and "fonts.googleapis" not in redoc.text
    assert client.get("/docs-assets/swagger-ui-bundle.js", headers={"X-API-Key": ""}).status_code == 200
    spec = client.get("/openapi.json", headers={"X-API-Key": ""}).json()
    assert {"/health", "/search", "/identify", "/duplicates", "/faces/{image_sha256}/thumbnail"} <= set(spec["paths"])


# -- queries ----------------------------------------------------------------------------------------
def test_search_finds_the_held_out_person_first(client: TestClient, indexed: Indexed):
    response = client.post("/search", files=upload(indexed.held_out["John_Simm"]), data={"k": "5"})
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["query"] == HELD_OUT["John_Simm"] and len(doc["faces"]) == 1
    hits = doc["faces"][0]["hits"]
    assert len(hits) == 5 and hits[0]["identity"] == "John_Simm"
    assert Path(hits[0]["image_path"]).parent.name == "John_Simm"
    assert [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)
    assert set(hits[0]) == {"image_path", "face_index", "bbox", "distance", "identity", "image_sha256", "same_person"}
    assert hits[0]["same_person"] is True and doc["threshold"] == indexed.settings.identify.thresholds["dlib-resnet-v1"]


def test_identify_returns_the_identity(client: TestClient, indexed: Indexed):
    doc = client.post("/identify", files=upload(indexed.held_out["John_Salley"])).json()
    assert [f["identity"] for f in doc["faces"]] == ["John_Salley"]
    assert doc["faces"][0]["distance"] <= doc["threshold"] == indexed.settings.identify.thresholds["dlib-resnet-v1"]
    strict = client.post("/identify", files=upload(indexed.held_out["John_Salley"]), data={"threshold": "0.01"}).json()
    assert strict["threshold"] == 0.01 and strict["faces"][0]["identity"] is None


def test_group_photo_gives_one_entry_per_face(client: TestClient, indexed: Indexed):
    doc = client.post("/search", files=upload(indexed.photos / "group.jpg"), data={"k": "3"}).json()
    assert len(doc["faces"]) >= 3
    for i, face in enumerate(doc["faces"]):
        top = face["hits"][0]
        assert top["image_path"].endswith("group.jpg") and top["face_index"] == i and top["distance"] < 1e-3


def test_duplicates_and_stats_have_the_cli_shapes(client: TestClient, indexed: Indexed):
    dup = client.get("/duplicates").json()
    pair = {str(p.resolve()) for p in indexed.copy_pair}
    assert dup["threshold"] == 0.55
    with_pair = [g for g in dup["groups"] if pair <= set(g["images"])]
    assert len(with_pair) == 1, dup  # the resized copy is found with its original
    assert 0.0 < with_pair[0]["max_distance"] <= 0.55
    for group in dup["groups"]:  # copies, not people: a group never spans two people
        assert len(group["images"]) >= 2 and group["images"] == sorted(group["images"])
        assert len({Path(p).parent.name for p in group["images"]} & set(PEOPLE)) <= 1, group
    assert [g["max_distance"] for g in dup["groups"]] == sorted(g["max_distance"] for g in dup["groups"])
    tight = 0.001  # below any face distance between the photo and its resized copy
    strict = client.get("/duplicates", params={"threshold": tight}).json()
    assert strict["threshold"] == tight and not any(pair <= set(g["images"]) for g in strict["groups"])
    stats = client.get("/stats").json()
    assert stats["index"] == {"type": "IVF_FLAT", "nlist": 16, "metric": "L2"} and stats["dim"] == 128


# -- thumbnails ---------------------------------------------------------------------------------------
def test_thumbnails(client: TestClient, indexed: Indexed):
    hits = client.post("/search", files=upload(indexed.photos / "group.jpg"), data={"k": "1"}).json()["faces"]
    sha = hits[0]["hits"][0]["image_sha256"]

    whole = client.get(f"/faces/{sha}/thumbnail", params={"max_side": 200})
    assert whole.status_code == 200 and whole.headers["content-type"] == "image/jpeg"
    assert whole.content.startswith(JPEG_MAGIC) and max(Image.open(io.BytesIO(whole.content)).size) == 200
    assert sha in whole.headers["etag"] and "max-age" in whole.headers["cache-control"]

    face = client.get(f"/faces/{sha.upper()}/thumbnail", params={"face_index": 1})
    assert face.status_code == 200 and face.content.startswith(JPEG_MAGIC)
    assert max(Image.open(io.BytesIO(face.content)).size) <= 256
    assert client.get(f"/faces/{sha}/thumbnail", params={"face_index": 1}, headers={"If-None-Match": face.headers["etag"]}).status_code == 304

    assert client.get(f"/faces/{sha}/thumbnail", params={"face_index": 99}).status_code == 404
    assert client.get(f"/faces/{'0' * 64}/thumbnail").status_code == 404
    for bad in ("abc", "g" * 64, "0" * 65, "0" * 63 + "%00"):
        malformed = client.get(f"/faces/{bad}/thumbnail")
        assert malformed.status_code == 422 and malformed.json()["error"] == "invalid_request", bad
    for traversal in ("../../etc/passwd", "%2Fetc%2Fpasswd"):  # never reaches the endpoint: no route matches
        assert client.get(f"/faces/{traversal}/thumbnail").status_code == 404
    assert client.get(f"/faces/{sha}/thumbnail", params={"max_side": 100_000}).status_code == 422


def test_thumbnail_of_a_deleted_file_is_404(client: TestClient, indexed: Indexed):
    from facesearch.ingest.images import load_image

    sha = load_image(indexed.gone, indexed.settings.images).sha256
    assert client.get(f"/faces/{sha}/thumbnail").status_code == 200
    indexed.gone.unlink()
    gone = client.get(f"/faces/{sha}/thumbnail", params={"max_side": 128})
    assert gone.status_code == 404 and gone.json()["error"] == "file_gone" and "gone" in gone.json()["detail"]


# -- security and limits --------------------------------------------------------------------------------
def test_api_key_is_required_when_configured(client: TestClient, indexed: Indexed):
    query = indexed.held_out["John_Simm"]
    for headers in ({"X-API-Key": ""}, {"X-API-Key": "wrong"}, {"X-API-Key": API_KEY + "x"}):
        denied = client.post("/search", files=upload(query), headers=headers)
        assert denied.status_code == 401 and denied.json()["error"] == "unauthorized"
        assert "X-API-Key" in denied.headers["www-authenticate"] and "X-API-Key" in denied.json()["detail"]
        assert client.get("/duplicates", headers=headers).status_code == 401
        assert client.get(f"/faces/{'0' * 64}/thumbnail", headers=headers).status_code == 401
    assert client.get("/health", headers={"X-API-Key": "wrong"}).status_code == 200
    assert client.post("/search", files=upload(query)).status_code == 200


def test_bad_uploads_are_422(client: TestClient, samples: Path):
    text = client.post("/search", files=upload(data=b"this is not a photo\n", name="notes.jpg"))
    assert text.status_code == 422 and text.json()["error"] == "not_an_image"
    empty = client.post("/search", files=upload(data=b"", name="empty.jpg"))
    assert empty.status_code == 422 and empty.json()["error"] == "empty_file"
    dogs = client.post("/identify", files=upload(samples / "voc_groups" / "dogs.jpg"))
    assert dogs.status_code == 422 and dogs.json()["error"] == "no_face" and "no face" in dogs.json()["detail"]
    assert client.post("/search", files=upload(samples / "voc_groups" / "dogs.jpg"), data={"k": "0"}).status_code == 422
    assert client.post("/search", files=upload(samples / "voc_groups" / "dogs.jpg"), data={"k": "101"}).status_code == 422
    assert client.post("/search", data={"k": "3"}).json()["error"] == "invalid_request"


def test_decompression_bomb_is_refused(client: TestClient):
    bomb = client.post("/search", files=upload(data=png_bomb_bytes(), name="bomb.png"))
    # 413, like any over-limit upload: the request is refused for its (decoded) size, not for being malformed
    assert bomb.status_code == 413 and bomb.json()["error"] == "too_many_pixels", bomb.text
    modest = client.post("/search", files=upload(data=png_bomb_bytes(7000, 7000), name="bomb.png"))  # 49 MP > 40 MP
    assert modest.status_code == 413 and "api.max_upload_pixels" in modest.json()["detail"]


def test_oversized_uploads_are_413(empty_client: TestClient):
    big = b"\xff\xd8\xff" + b"\0" * 200_000
    declared = empty_client.post("/search", files=upload(data=big))
    assert declared.status_code == 413 and declared.json()["error"] == "upload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the body is counted while it streams
        for _ in range(40):
            yield b"\0" * 8192

    streamed = empty_client.post("/search", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert streamed.status_code == 413
    just_over = empty_client.post("/search", files=upload(data=b"\0" * 50_001))  # within the multipart slack
    assert just_over.status_code == 413 and "50000" in just_over.json()["detail"]


def test_unexpected_errors_are_500_without_details(empty_client: TestClient, caplog: pytest.LogCaptureFixture):
    app = empty_client.app

    @app.get("/boom", include_in_schema=False)  # type: ignore[union-attr]
    async def boom() -> None:
        raise RuntimeError("secret internals /etc/shadow")

    with caplog.at_level("ERROR", logger="facesearch.serve.api"):
        response = empty_client.get("/boom")
    assert response.status_code == 500 and response.json()["error"] == "internal_error"
    assert "secret" not in response.text and "Traceback" not in response.text
    assert "secret internals" in caplog.text and "RuntimeError" in caplog.text


def test_empty_store_answers_404_until_something_is_indexed(empty_client: TestClient, indexed: Indexed):
    health = empty_client.get("/health").json()
    assert health["status"] == "ok" and health["collection"] is None and health["faces"] is None
    small = Image.open(indexed.held_out["John_Simm"]).convert("RGB")
    buf = io.BytesIO()
    small.save(buf, "JPEG")  # under the 50 kB limit of this app
    missing = empty_client.post("/search", files=upload(data=buf.getvalue()))
    assert missing.status_code == 404 and missing.json()["error"] == "not_indexed"
    assert "index some photos first" in missing.json()["detail"]
    assert empty_client.get("/duplicates").status_code == 404


def test_unreachable_store_is_degraded_not_500(tmp_path: Path, indexed: Indexed):
    settings = make_settings(tmp_path, milvus={"uri": "http://127.0.0.1:9", "timeout_s": 1, "retries": 0})
    with TestClient(create_app(settings), base_url=BASE_URL) as down:  # starts anyway: Milvus may come back
        health = down.get("/health")
        assert health.status_code == 503
        assert health.json() | {"milvus_uri": None} == {
            "status": "degraded", "store_reachable": False, "milvus_uri": None, "collection": None, "faces": None, "encoder": None,
        }
        search = down.post("/search", files=upload(indexed.held_out["John_Simm"]))
        assert search.status_code == 503 and search.json()["error"] == "store_unavailable"


def test_only_configured_host_names_are_answered(client: TestClient, indexed: Indexed):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example -> 400."""
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "testserver"):
        for path in ("/duplicates", "/stats", "/health", "/"):
            response = client.get(path, headers={"Host": host})
            assert response.status_code == 400, (host, path)
            assert "faces" not in response.text and "image_path" not in response.text
    for host in ("localhost", "127.0.0.1:8000", "LOCALHOST:1234"):
        assert client.get("/stats", headers={"Host": host}).status_code == 200, host
    extra = indexed.settings.model_copy(update={"api": indexed.settings.api.model_copy(update={"allowed_hosts": ("photos.lan",), "host": "10.0.0.5"})})
    with TestClient(create_app(extra), base_url="http://photos.lan", headers={"X-API-Key": API_KEY}) as lan:
        assert lan.get("/stats").status_code == 200
        assert lan.get("/stats", headers={"Host": "10.0.0.5:8000"}).status_code == 200  # the bind host is always accepted
        assert lan.get("/stats", headers={"Host": "localhost"}).status_code == 400  # allowed_hosts replaces the defaults


def test_down_store_answers_503_at_once_without_queueing(tmp_path: Path):
    """While Milvus is down, no request waits on another's connection retries (Services.get held a lock across them)."""
    from concurrent.futures import ThreadPoolExecutor

    settings = make_settings(tmp_path, milvus={"uri": "http://127.0.0.1:9", "timeout_s": 1, "retries": 3, "retry_backoff_s": 0.5})
    with TestClient(create_app(settings), base_url=BASE_URL) as down:

        def timed(path: str) -> tuple[int, float]:
            started = time.monotonic()
            status = down.get(path).status_code
            return status, time.monotonic() - started

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(timed, ["/health"] * 6 + ["/stats"] * 2))
        wall = time.monotonic() - started
    assert [status for status, _ in answers] == [503] * 8
    assert max(took for _, took in answers) < 2.5 and wall < 3.0, answers  # one connect with retries takes 3.5 s


def test_loopback_rule():
    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback_host(host), host
        check_bind_allowed(host, "")
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.com", ""):
        assert not is_loopback_host(host), host
        with pytest.raises(ConfigError, match="API key"):
            check_bind_allowed(host, "")
        check_bind_allowed(host, "a-key")


def test_serve_refuses_public_bind_without_key(tmp_path: Path):
    from facesearch.cli import app

    args = ["--set", f"milvus.uri={tmp_path / 'm' / 'faces.db'}", "serve", "--host", "0.0.0.0", "--port", "8765"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 2 and "refusing to serve" in result.stderr and "api.api_key" in result.stderr


# -- promotion while serving --------------------------------------------------------------------------
def test_searches_survive_alias_moves(client: TestClient, indexed: Indexed):
    """A thread flips the alias between two collections while searches run: no 5xx, always answers."""
    from facesearch.store import FaceStore

    settings, alias = indexed.settings, indexed.settings.milvus.alias
    with FaceStore(settings.milvus) as store:
        original = store.alias_target(alias)
        twin = f"{original}__twin"
        store.ensure_collection(twin, 128, settings.index)
        store.upsert(twin, store.records(original, "id >= 0"))
        stop, moves = threading.Event(), [0]

        def flip() -> None:
            while not stop.is_set():
                store.point_alias(alias, twin if moves[0] % 2 == 0 else original)
                moves[0] += 1

        mover = threading.Thread(target=flip, daemon=True)
        mover.start()
        try:
            statuses, query = [], indexed.held_out["John_Simm"]
            for i in range(100):
                response = client.post("/search", files=upload(query), data={"k": "2"}) if i % 2 else client.get("/health")
                statuses.append(response.status_code)
                if i % 2:
                    assert response.json()["faces"][0]["hits"][0]["identity"] == "John_Simm"
        finally:
            stop.set()
            mover.join(10)
            store.point_alias(alias, original)
            store.drop_collection(twin)
    assert statuses == [200] * 100 and moves[0] >= 10


def test_promotion_to_another_encoders_collection_is_followed(client: TestClient, indexed: Indexed):
    """Defect 1: the API cached the first encoder; after the alias moved to an SFace collection, queries were
    embedded with dlib into SFace's space. With encoder.backend=auto it loads SFace; pinned to dlib it is 503, never 500."""
    from facesearch.ingest.indexer import index_jobs, plan_jobs
    from facesearch.models.encoders import build_encoder
    from facesearch.store import FaceStore

    settings, alias = indexed.settings, indexed.settings.milvus.alias
    auto = settings.model_copy(update={"encoder": settings.encoder.model_copy(update={"backend": "auto"})})
    group, held = indexed.photos / "group.jpg", indexed.held_out["John_Simm"]
    with FaceStore(settings.milvus) as store, TestClient(create_app(auto), base_url=BASE_URL, headers={"X-API-Key": API_KEY}) as followed:
        dlib_collection = store.alias_target(alias)
        before = followed.post("/search", files=upload(held), data={"k": "1"})
        assert before.status_code == 200 and before.json()["faces"][0]["hits"][0]["identity"] == "John_Simm"
        sface = build_encoder(auto, "sface")
        sface_collection = store.collection_name(sface.encoder_id)
        store.ensure_collection(sface_collection, sface.dim, settings.index)
        enrolled, _ = plan_jobs([indexed.photos / person for person in PEOPLE], auto, identity_from_folder=True)
        others, _ = plan_jobs([group], auto)
        index_jobs(enrolled + others, auto, store, sface, sface_collection)
        store.point_alias(alias, sface_collection)
        try:
            assert followed.get("/health").json()["encoder"] == "sface-2021dec"
            for api in (followed, client):  # the auto app, and the long-running dlib-pinned one
                api.post("/search", files=upload(held))  # whatever it answers, it must not poison later requests
            doc = followed.post("/search", files=upload(group), data={"k": "1"})
            assert doc.status_code == 200, doc.text
            for face in doc.json()["faces"]:  # the group photo finds itself only when embedded in SFace's space
                top = face["hits"][0]
                assert top["image_path"].endswith("group.jpg") and top["distance"] < 1e-3, top
            who = followed.post("/identify", files=upload(indexed.held_out["John_Salley"])).json()
            assert who["threshold"] == auto.identify.thresholds["sface-2021dec"] and [f["identity"] for f in who["faces"]] == ["John_Salley"]
            pinned = client.post("/search", files=upload(held))
            assert pinned.status_code == 503 and pinned.json()["error"] == "encoder_unavailable"
            assert "encoder.backend=dlib" in pinned.json()["detail"] and "sface-2021dec" in pinned.json()["detail"]
            with TestClient(create_app(settings), base_url=BASE_URL, headers={"X-API-Key": API_KEY}) as restarted:  # starts anyway
                assert restarted.post("/search", files=upload(held)).json()["error"] == "encoder_unavailable"
        finally:
            store.point_alias(alias, dlib_collection)
            store.drop_collection(sface_collection)
        back = followed.post("/search", files=upload(group), data={"k": "1"})
        assert back.status_code == 200 and all(f["hits"][0]["distance"] < 1e-3 for f in back.json()["faces"])
