"""The configuration sections (one pydantic model per section of ``configs/default.yaml``).

Validation only: loading and merging the layers is :mod:`facesearch.settings`, which re-exports these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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


class InferenceSettings(_Section):
    """How the ONNX models (YuNet, SFace) run on CPU (facesearch.models.runtime)."""

    engine: Literal["auto", "openvino", "onnxruntime", "opencv"] = Field(
        "auto", description="auto = openvino when installed; opencv = cv2.FaceDetectorYN/FaceRecognizerSF (one face per call)"
    )
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="openvino: auto = bf16 where the CPU computes it natively")
    threads: int = Field(0, ge=0, description="inference threads in all; 0 = every core")
    streams: int = Field(2, ge=1, le=64, description="openvino: calls that run at once (threads split between them); ingest detects this many photos at a time")
    cache_dir: Path | None = Field(None, description="dequantised graphs and compiled blobs; null = $XDG_CACHE_HOME/facesearch/models")


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
    # On a server, searches go out on pymilvus' gRPC stub with a request it built once (store/stub_search.py:
    # ~0.3-0.5 ms less per search); false = every search through MilvusClient.search.
    stub_search: bool = True
    index_build_timeout_s: float = Field(1800.0, gt=0, description="wait this long for a server to finish an index build")
    server_dir: Path = Path("data/milvus-server")  # where `facesearch store start` keeps a local Milvus standalone
    # a Lite store moves itself to the standalone in server_dir at this many faces (0 = never; README: Performance)
    auto_server_faces: int = Field(20000, ge=0)

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


class PeopleSettings(_Section):
    # Clustering faces into persons (serve.people): DBSCAN-like within identify.thresholds[encoder].
    min_faces: int = Field(3, ge=1, le=10_000, description="faces a person needs (DBSCAN min_samples, the face itself included)")
    k: int = Field(16, ge=2, le=16384, description="nearest faces fetched per face (top-k search, cut at the threshold)")
    query_batch: int = Field(256, ge=1, description="faces per Milvus search call")
    nprobe: int = Field(0, ge=0, le=65536, description="IVF lists searched; 0 = all of them (exact neighbours)")

    @model_validator(mode="after")
    def _k_covers_min_faces(self) -> PeopleSettings:
        if self.k < self.min_faces:
            raise ValueError(f"people.k ({self.k}) must be at least people.min_faces ({self.min_faces}): a face's neighbours are counted among its k nearest")
        return self


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
    abandoned_after_h: float = Field(24.0, gt=0, description="a candidate never finished or promoted this long is dropped")
    lock_timeout_s: float = Field(600.0, gt=0, description="wait this long for another promotion to finish")


class CapacitySettings(_Section):
    """Assumptions of ``facesearch plan`` (the measured inputs come from the index bench, never from here)."""

    bench_file: Path = Path("bench/results/index_types.json")
    node_memory_gb: float = Field(64.0, gt=0, description="RAM of one Milvus query node")
    memory_headroom: float = Field(0.7, gt=0, le=1, description="fraction of a node's RAM the index may fill")
    node_cores: int = Field(16, ge=1, description="cores of one query node (QPS scales from the bench machine's cores)")
    vectors_per_shard: int = Field(100_000_000, ge=1, description="at most this many vectors per shard")
    max_query_nodes: int = Field(512, ge=1, description="a plan needing more query nodes does not fit")
    raw_vectors_on_disk: bool = Field(True, description="object storage also keeps the raw vectors (binlogs)")
    segment_max_mb: int = Field(512, ge=1, description="Milvus dataCoord.segment.maxSize: indexes are built per sealed segment, so nlist follows the segment")


class TrackingSettings(_Section):
    mlflow_uri: str = "sqlite:///data/mlflow/mlflow.db"
    artifact_root: Path = Path("data/mlflow/artifacts")
    experiment: str = "facesearch-index-sweep"
    registered_model: str = Field("facesearch-index", min_length=1, description="MLflow registered model whose @serving alias follows promotion")


class ScheduleSettings(_Section):
    cron: str = "0 3 * * *"
    deployment_name: str = "facesearch-nightly-reindex"
    prefect_api_url: str = Field("http://127.0.0.1:4200/api", description="a Prefect server here is reused (make prefect-ui / make schedule)")
    retries: int = Field(1, ge=0, le=5, description="a failed scheduled run is retried this many times (Prefect flow retries)")
    retry_delay_s: float = Field(300.0, ge=0)


class ApiSettings(_Section):
    host: str = "127.0.0.1"  # binding beyond loopback requires api_key
    allowed_hosts: tuple[str, ...] = Field(("127.0.0.1", "localhost"), description="Host headers accepted (DNS rebinding); the bind host is added")
    port: int = Field(8000, ge=1, le=65535)
    api_key: str = Field("", description="required as X-API-Key on every endpoint but /health, / and docs when set")
    max_upload_bytes: int = Field(10_000_000, ge=1)
    max_upload_pixels: int = Field(40_000_000, ge=1, description="decompression-bomb guard for uploads")
    max_k: int = Field(100, ge=1, le=16384)
    inference_concurrency: int = Field(2, ge=1, le=64, description="uploads decoded and run through the models at once")


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
