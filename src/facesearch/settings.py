"""Typed settings: ``configs/default.yaml`` (+ optional overlay files) < ``FACESEARCH__*`` env < CLI.

Nothing happens at import. Call :func:`load_settings` once at the edge (CLI, flow, API)
and pass the returned :class:`Settings` down explicitly.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, InitSettingsSource, SettingsConfigDict

from facesearch.errors import ConfigError

ENV_PREFIX = "FACESEARCH__"
CONFIG_ENV = "FACESEARCH_CONFIG"  # colon-separated overlay files, applied after configs/default.yaml


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EncoderSettings(_Section):
    backend: Literal["auto", "sface", "facenet", "dlib"] = Field("auto", description="auto = sface (README: Models)")
    # facenet: a local InceptionResnetV1 VGGFace2 state_dict; empty = facenet-pytorch's cache path.
    weights_path: Path | None = None
    allow_download: bool = True
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto = cuda when torch sees a GPU, else cpu")
    runtime: Literal["onnx", "torch"] = "onnx"  # facenet on CPU: onnxruntime runs the same weights ~2x faster
    batch_size: int = Field(32, ge=1, le=1024)
    num_threads: int = Field(0, ge=0, description="intra-op threads of the encoder's runtime (torch, onnxruntime); 0 = its default")


class DetectionSettings(_Section):
    backend: Literal["auto", "yunet", "mtcnn"] = Field("auto", description="auto = the detector paired with the encoder")
    yunet_score_threshold: float = Field(0.8, ge=0.0, le=1.0, description="YuNet: drop faces scoring below this")
    min_face_size: int = Field(20, ge=8)
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    pyramid_factor: float = Field(0.709, gt=0.1, lt=1.0, description="MTCNN scale step between pyramid levels")
    retry_padded: bool = Field(True, description="no face found: detect once more on a copy with a border (close-ups)")
    min_det_prob: float = Field(0.90, ge=0.0, le=1.0)
    max_side: int = Field(1024, ge=160, description="images are downscaled to this longest side before detection")
    max_faces_per_image: int = Field(64, ge=1)
    crop_margin: int = Field(0, ge=0)


class ImageSettings(_Section):
    max_pixels: int = Field(40_000_000, ge=1, description="decompression-bomb guard, checked before decoding")
    draft_side: int = Field(1024, ge=0, description="decode big JPEGs at a reduced scale, longest side >= this; 0 = full size")
    max_file_bytes: int = Field(50_000_000, ge=1)
    extensions: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
    load_workers: int = Field(2, ge=1, le=32)


class MilvusSettings(_Section):
    uri: str = "data/milvus/facesearch.db"
    token: str = ""
    db_name: str = ""  # Milvus database ("" = default); must exist on a server
    alias: str = "face_search"
    collection_prefix: str = "face_search"
    timeout_s: float = Field(10.0, gt=0)
    retries: int = Field(3, ge=0, le=10)
    retry_backoff_s: float = Field(0.5, ge=0)
    insert_batch: int = Field(512, ge=1)
    # Strong makes every search on a Milvus server wait for the next time tick (~200 ms); Bounded
    # (Milvus' own default) sees rows a few seconds old at 2-3 ms. Milvus Lite ignores it.
    search_consistency: Literal["Strong", "Bounded", "Session", "Eventually"] = "Bounded"
    index_build_timeout_s: float = Field(1800.0, gt=0, description="wait this long for a server to finish an index build")
    server_dir: Path = Path("data/milvus-server")  # where `facesearch store start` keeps a local Milvus standalone

    @property
    def is_local_lite(self) -> bool:
        """True when the URI is a Milvus Lite path rather than a server address."""
        return "://" not in self.uri


class IndexSettings(_Section):
    index_type: Literal["IVF_FLAT"] = "IVF_FLAT"
    metric_type: Literal["L2"] = "L2"
    nlist: int = Field(128, ge=1, le=65536)
    nprobe: int = Field(16, ge=1, le=65536)


class SearchSettings(_Section):
    k: int = Field(10, ge=1, le=16384)


class IdentifySettings(_Section):
    # Max L2 distance between unit embeddings for "same person", per encoder id.
    # dlib value calibrated on samples/faces/johns with `facesearch calibrate` (see README).
    thresholds: dict[str, float] = {"dlib-resnet-v1": 0.42, "facenet-vggface2": 1.05, "sface-2021dec": 1.04}


class DuplicateSettings(_Section):
    # Candidate radius: max L2 distance between matching faces of two copies, per encoder id.
    # dlib: resized/recompressed copies of the samples stay below 0.52 (tiny VOC faces), most below 0.2.
    thresholds: dict[str, float] = {"dlib-resnet-v1": 0.55, "facenet-vggface2": 0.9, "sface-2021dec": 1.1}
    # Faces this close are the same photo of the same face (no other check needed), per encoder id.
    # dlib on the johns: re-processed copies <= 0.057, different photos of one person >= 0.126.
    near_identical: dict[str, float] = {"dlib-resnet-v1": 0.09, "facenet-vggface2": 0.3, "sface-2021dec": 0.12}
    phash_max_bits: int = Field(6, ge=0, le=63, description="max whole-photo pHash difference for a copy")
    layout_tolerance: float = Field(0.25, gt=0, description="max box-layout mismatch (in face widths) for a cropped copy")
    k: int = Field(16, ge=2, le=1024)
    query_batch: int = Field(256, ge=1)


class PathSettings(_Section):
    project_dir: Path = Path(".")  # where data.dvc and dvc.yaml live (the DVC/git repo root)
    data_dir: Path = Path("data")
    images_dir: Path = Path("data/images")
    embeddings_dir: Path = Path("data/embeddings")
    reports_dir: Path = Path("data/reports")


class DatasetSettings(_Section):
    # Images under these sub-folders of paths.images_dir are labelled with their parent folder's
    # name (people/<Name>/photo.jpg -> identity "Name"); everything else is unlabelled.
    labelled_dirs: tuple[str, ...] = ("people",)
    dvc_remote: str = "dvc-remote"  # a directory (relative to the repo root) or any DVC remote URL
    dvc_remote_name: str = "local"
    push: bool = True


class ComputeSettings(_Section):
    """Where embedding runs: in this process, or fanned out on a Dask cluster through Prefect."""

    dask_address: str = Field("", pattern=r"^(|local|tcp://.+|tls://.+)$", description="'' = in-process; local = a LocalCluster; tcp://host:8786")
    workers: int = Field(2, ge=1, le=256, description="local: worker processes")
    threads_per_worker: int = Field(1, ge=1, le=64, description="inference threads in each worker")
    shard_images: int = Field(32, ge=1, description="images per shard (one Prefect task each)")
    connect_timeout_s: float = Field(10.0, gt=0, description="give up on an unreachable scheduler after this")


class ValidationSettings(_Section):
    allowed_formats: tuple[str, ...] = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF")
    min_side: int = Field(32, ge=1)
    max_side: int = Field(20000, ge=1)
    min_file_bytes: int = Field(100, ge=0)
    max_file_bytes: int = Field(50_000_000, ge=1)
    max_unreadable_fraction: float = Field(0.05, ge=0.0, le=1.0)
    fail_on_duplicate_sha256: bool = False  # duplicates are always flagged; fail only if asked
    norm_tolerance: float = Field(1e-3, gt=0)
    min_det_prob: float | None = Field(None, ge=0.0, le=1.0, description="null = the detector's own score threshold")
    min_mean_faces_per_image: float = Field(0.5, ge=0.0)
    max_mean_faces_per_image: float = Field(20.0, gt=0.0)
    max_no_face_fraction: float = Field(0.5, ge=0.0, le=1.0)


SweepIndexType = Literal["IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "DISKANN"]


class SweepSettings(_Section):
    nlist_grid: tuple[int, ...] = ()  # empty = derived from N (around 4*sqrt(N))
    nprobe_grid: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    min_points_per_list: int = Field(4, ge=1, description="cap nlist at N / this (IVF k-means needs points per list)")
    max_nlist: int = Field(4096, ge=1)
    k: int = Field(10, ge=1)
    queries: int = Field(200, ge=1, description="stored faces used as queries (recall and batched QPS)")
    latency_queries: int = Field(50, ge=1, description="single-query calls timed per configuration")
    seed: int = 0
    index_types: tuple[SweepIndexType, ...] = Field(("IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "DISKANN"), min_length=1)
    large_index_types_from: int = Field(50_000, ge=0, description="smaller collections sweep IVF_FLAT only")
    pq_m: int = Field(0, ge=0, description="IVF_PQ sub-quantizers; 0 = dim/4 (or the largest divisor of dim below it)")
    pq_nbits: int = Field(8, ge=1, le=16)
    hnsw_m: int = Field(16, ge=2, le=2048)
    hnsw_ef_construction: int = Field(200, ge=1)
    hnsw_ef_grid: tuple[int, ...] = Field((16, 32, 64, 128, 256), min_length=1)
    diskann_search_list_grid: tuple[int, ...] = Field((16, 32, 64, 128, 256), min_length=1)
    probe_timeout_s: float = Field(120.0, gt=0, description="a type not built on a 3000-row probe in this time is skipped")


class PromotionSettings(_Section):
    min_recall: float = Field(0.99, ge=0.0, le=1.0)
    rule: Literal["lowest_p95_with_min_recall", "lowest_p99_with_min_recall"] = "lowest_p95_with_min_recall"
    max_memory_gb: float | None = Field(None, gt=0, description="null = unlimited; bytes/vector x N must fit")
    keep_collections: int = Field(3, ge=1, description="candidate collections kept for rollback")


class CapacitySettings(_Section):
    """Assumptions of ``facesearch plan`` (the measured inputs come from the index bench, never from here)."""

    bench_file: Path = Path("bench/results/index_types.json")
    node_memory_gb: float = Field(64.0, gt=0, description="RAM of one Milvus query node")
    memory_headroom: float = Field(0.7, gt=0, le=1, description="fraction of a node's RAM the index may fill")
    node_cores: int = Field(16, ge=1, description="cores of one query node (QPS scales from the bench machine's cores)")
    vectors_per_shard: int = Field(100_000_000, ge=1, description="at most this many vectors per shard")
    max_query_nodes: int = Field(512, ge=1, description="a plan needing more query nodes does not fit")
    raw_vectors_on_disk: bool = Field(True, description="object storage also keeps the raw vectors (binlogs)")


class TrackingSettings(_Section):
    mlflow_uri: str = "sqlite:///data/mlflow/mlflow.db"
    artifact_root: Path = Path("data/mlflow/artifacts")
    experiment: str = "facesearch-index-sweep"


class ScheduleSettings(_Section):
    cron: str = "0 3 * * *"
    deployment_name: str = "facesearch-nightly-reindex"


class ApiSettings(_Section):
    host: str = "127.0.0.1"  # binding beyond loopback requires api_key
    port: int = Field(8000, ge=1, le=65535)
    api_key: str = Field("", description="required as X-API-Key on every endpoint but /health, / and docs when set")
    max_upload_bytes: int = Field(10_000_000, ge=1)
    max_upload_pixels: int = Field(40_000_000, ge=1, description="decompression-bomb guard for uploads")
    max_k: int = Field(100, ge=1, le=16384)
    inference_concurrency: int = Field(2, ge=1, le=64, description="uploads decoded and run through the models at once")


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(_Section):
    """All FaceSearch settings. Sections mirror ``configs/default.yaml``."""

    encoder: EncoderSettings = EncoderSettings()
    detection: DetectionSettings = DetectionSettings()
    images: ImageSettings = ImageSettings()
    milvus: MilvusSettings = MilvusSettings()
    index: IndexSettings = IndexSettings()
    search: SearchSettings = SearchSettings()
    identify: IdentifySettings = IdentifySettings()
    duplicates: DuplicateSettings = DuplicateSettings()
    paths: PathSettings = PathSettings()
    dataset: DatasetSettings = DatasetSettings()
    validation: ValidationSettings = ValidationSettings()
    compute: ComputeSettings = ComputeSettings()
    sweep: SweepSettings = SweepSettings()
    promotion: PromotionSettings = PromotionSettings()
    tracking: TrackingSettings = TrackingSettings()
    capacity: CapacitySettings = CapacitySettings()
    schedule: ScheduleSettings = ScheduleSettings()
    api: ApiSettings = ApiSettings()
    logging: LoggingSettings = LoggingSettings()

    @model_validator(mode="after")
    def _nprobe_within_nlist(self) -> Settings:
        if self.index.nprobe > self.index.nlist:
            raise ValueError(f"index.nprobe ({self.index.nprobe}) must not exceed index.nlist ({self.index.nlist})")
        return self

    def fingerprint(self) -> str:
        """Stable hash of the settings that shape a built collection (not where things run or log)."""
        blob = json.dumps(self.model_dump(mode="json", exclude=set(OPERATIONAL_SECTIONS)), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# Sections that say where and how FaceSearch runs, not what it builds: left out of fingerprint().
OPERATIONAL_SECTIONS = ("milvus", "paths", "tracking", "schedule", "api", "logging", "compute", "capacity")


class _Sources(BaseSettings):
    """Merges the layers; validated afterwards into the plain :class:`Settings` model."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore")

    encoder: dict[str, Any] = {}
    detection: dict[str, Any] = {}
    images: dict[str, Any] = {}
    milvus: dict[str, Any] = {}
    index: dict[str, Any] = {}
    search: dict[str, Any] = {}
    identify: dict[str, Any] = {}
    duplicates: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    dataset: dict[str, Any] = {}
    validation: dict[str, Any] = {}
    compute: dict[str, Any] = {}
    sweep: dict[str, Any] = {}
    promotion: dict[str, Any] = {}
    tracking: dict[str, Any] = {}
    capacity: dict[str, Any] = {}
    schedule: dict[str, Any] = {}
    api: dict[str, Any] = {}
    logging: dict[str, Any] = {}


def default_config_path() -> Path | None:
    """``configs/default.yaml`` in the working directory, else beside the source checkout."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = root / "configs" / "default.yaml"
        if candidate.is_file():
            return candidate
    return None


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["milvus.uri=http://h:19530", "index.nlist=256"]`` -> nested dict (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {pair!r} must look like section.key=value")
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw) if raw else ""
    return nested


def _parse_env_lists(data: Any) -> Any:
    """Env values arrive as strings: ``FACESEARCH__SWEEP__NPROBE_GRID='[1, 2, 4]'`` becomes a list."""
    if isinstance(data, dict):
        return {k: _parse_env_lists(v) for k, v in data.items()}
    if isinstance(data, str) and len(data) >= 2 and data[0] in "[{" and data[-1] in "]}":
        try:
            return yaml.safe_load(data)
        except yaml.YAMLError:
            return data
    return data


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(settings)"
        given = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        lines.append(f"{key}: {err['msg']}{given}")
    return "invalid configuration: " + "; ".join(lines)


def load_settings(
    config_files: list[Path] | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    use_default_file: bool = True,
) -> Settings:
    """Build :class:`Settings` from default.yaml, overlay files, ``FACESEARCH__*`` env and overrides."""
    files: list[Path] = []
    if use_default_file and (default := default_config_path()):
        files.append(default)
    files += [Path(p) for p in os.environ.get(CONFIG_ENV, "").split(os.pathsep) if p]
    files += [Path(p) for p in (config_files or [])]
    file_data: dict[str, Any] = {}
    for path in files:
        file_data = _deep_merge(file_data, read_yaml(path))

    unknown = sorted(set(file_data) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"invalid configuration: unknown section(s) {', '.join(unknown)}")
    unknown = sorted(set(overrides or {}) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"invalid configuration: unknown section(s) in overrides: {', '.join(unknown)}")
    unknown = sorted(
        name for name in os.environ
        if name.upper().startswith(ENV_PREFIX) and name[len(ENV_PREFIX):].split("__")[0].lower() not in Settings.model_fields
    )
    if unknown:
        raise ConfigError(f"invalid configuration: environment variable(s) {', '.join(unknown)} name no settings section")

    class _Layered(_Sources):
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):  # type: ignore[override]  # noqa: ANN001
            return (init_settings, env_settings, InitSettingsSource(settings_cls, init_kwargs=file_data))

    try:
        layered = _Layered(**(overrides or {}))
        return Settings.model_validate(_parse_env_lists(layered.model_dump()))
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None

