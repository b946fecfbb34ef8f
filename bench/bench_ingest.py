"""Ingest benchmark: FaceSearch's index path against the loops a user would otherwise write.

Same photos, same run, same machine:
* naive facenet-pytorch: ``MTCNN(keep_all=True)`` on the full-size photo, then InceptionResnetV1 once
  per face, one photo at a time (the facenet-pytorch README loop);
* ``face_recognition``-style dlib: HOG detector (upsample 1) on the full photo, 68-point landmarks,
  ResNet descriptor per face;
* FaceSearch ``index_jobs`` (decode threads, reduced-scale JPEG decode, MTCNN at ``detection.max_side``,
  batched embedding, upsert into Milvus Lite), with the facenet and the dlib backend.

InceptionResnetV1 runs with a random-init state_dict of the real architecture: the VGGFace2 weights
cannot be downloaded here and do not change the compute. Faces found are scored against the hand
labelled boxes of the VOC sample photos (IoU >= 0.4), so speed never hides missed faces.

    python bench/bench_ingest.py --out bench/results/ingest.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SAMPLES = ROOT / "samples" / "faces"

log = logging.getLogger("bench.ingest")


def iou(a: Any, b: Any) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def voc_truth() -> dict[str, list[tuple[float, float, float, float]]]:
    truth: dict[str, list] = {}
    for xml in ("training.xml", "testing.xml"):
        for image in ET.parse(SAMPLES / "voc_groups" / xml).getroot().iter("image"):
            boxes = [
                (float(b.get("left")), float(b.get("top")), float(b.get("left")) + float(b.get("width")), float(b.get("top")) + float(b.get("height")))
                for b in image.iter("box")
                if b.get("ignore") != "1"
            ]
            truth.setdefault(image.get("file"), []).extend(boxes)
    return truth


def faces_found(boxes_by_file: dict[str, list], truth: dict[str, list]) -> tuple[int, int]:
    found = total = 0
    for name, boxes in truth.items():
        total += len(boxes)
        found += sum(any(iou(t, b) >= 0.4 for b in boxes_by_file.get(name, [])) for t in boxes)
    return found, total


def random_facenet_weights(folder: Path) -> Path:
    import torch
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    path = folder / "inception_resnet_v1_random.pt"
    torch.save(InceptionResnetV1(pretrained=None, classify=False, num_classes=8631).state_dict(), path)
    return path


def naive_facenet(paths: list[Path], weights: Path) -> tuple[float, dict[str, list]]:
    """The facenet-pytorch README loop: full-size MTCNN, then one InceptionResnetV1 call per face."""
    import torch
    from facenet_pytorch import MTCNN, InceptionResnetV1
    from PIL import Image

    mtcnn = MTCNN(keep_all=True)
    resnet = InceptionResnetV1(pretrained=None, classify=False).eval()
    state = {k: v for k, v in torch.load(weights, weights_only=True).items() if not k.startswith("logits.")}
    resnet.load_state_dict(state)
    boxes_by_file: dict[str, list] = {}
    started = time.perf_counter()
    for path in paths:
        img = Image.open(path).convert("RGB")
        boxes, probs = mtcnn.detect(img)
        if boxes is None:
            boxes_by_file[path.name] = []
            continue
        boxes = [b.astype(float) for b, p in zip(boxes, probs, strict=True) if float(p) >= 0.9]
        faces = mtcnn.extract(img, [*boxes], None) if boxes else []
        for face in faces:
            with torch.no_grad():
                resnet(face.unsqueeze(0))
        boxes_by_file[path.name] = [tuple(b) for b in boxes]
    return time.perf_counter() - started, boxes_by_file


def dlib_hog(paths: list[Path]) -> tuple[float, dict[str, list]]:
    """What ``face_recognition.face_encodings(face_recognition.load_image_file(p))`` does, without the wrapper."""
    import dlib
    import face_recognition_models as models
    import numpy as np
    from PIL import Image

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(models.pose_predictor_model_location())
    net = dlib.face_recognition_model_v1(models.face_recognition_model_location())
    boxes_by_file: dict[str, list] = {}
    started = time.perf_counter()
    for path in paths:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        rects = detector(pixels, 1)
        for rect in rects:
            net.compute_face_descriptor(pixels, predictor(pixels, rect), 1)
        boxes_by_file[path.name] = [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]
    return time.perf_counter() - started, boxes_by_file


def facesearch_index(paths: list[Path], backend: str, weights: Path, work: Path) -> tuple[float, dict[str, list]]:
    """FaceSearch's real index path (decode threads, detection, batched embedding, Milvus Lite upsert)."""
    from facesearch.ingest.indexer import IndexJob, index_jobs
    from facesearch.models.encoders import build_encoder
    from facesearch.serve.serving import ingest_collection
    from facesearch.settings import load_settings
    from facesearch.store import FaceStore

    settings = load_settings(
        overrides={"encoder": {"backend": backend, "weights_path": str(weights)}, "milvus": {"uri": str(work / f"{backend}.db")}}
    )
    encoder = build_encoder(settings)
    with FaceStore(settings.milvus) as store:
        collection = ingest_collection(store, settings, encoder)
        started = time.perf_counter()
        index_jobs([IndexJob(p) for p in paths], settings, store, encoder, collection)
        elapsed = time.perf_counter() - started
        rows = store.query(collection, "face_index >= 0", ["image_path", "bbox"])
    boxes_by_file: dict[str, list] = {}
    for row in rows:
        boxes_by_file.setdefault(Path(row["image_path"]).name, []).append(tuple(row["bbox"]))
    return elapsed, boxes_by_file


def run(out: Path) -> dict[str, Any]:
    import torch

    group = sorted((SAMPLES / "group_photos").glob("*.jpg"))
    voc = sorted((SAMPLES / "voc_groups").glob("*.jpg"))
    truth = voc_truth()
    work = Path(tempfile.mkdtemp(prefix="facesearch-bench-ingest-"))
    weights = random_facenet_weights(work)
    results: dict[str, Any] = {}
    pipelines = {
        "naive_facenet": lambda paths: naive_facenet(paths, weights),
        "dlib_hog": dlib_hog,
        "facesearch_facenet": lambda paths: facesearch_index(paths, "facenet", weights, work / "fn"),
        "facesearch_dlib": lambda paths: facesearch_index(paths, "dlib", weights, work / "dl"),
    }
    for name, fn in pipelines.items():
        (work / "fn").mkdir(exist_ok=True)
        (work / "dl").mkdir(exist_ok=True)
        fn(group[:1])  # warm-up: model load, first-call allocations
        group_s, group_boxes = fn(group)
        voc_s, voc_boxes = fn(voc)
        found, total = faces_found(voc_boxes, truth)
        results[name] = {
            "group_photos": len(group),
            "group_s_per_photo": round(group_s / len(group), 4),
            "group_faces": sum(len(v) for v in group_boxes.values()),
            "voc_photos": len(voc),
            "voc_s_per_photo": round(voc_s / len(voc), 4),
            "voc_faces_found": found,
            "voc_faces_annotated": total,
            "voc_recall": round(found / total, 4),
        }
        log.info("%-20s %s", name, results[name])
    naive = results["naive_facenet"]["group_s_per_photo"]
    ours = results["facesearch_facenet"]["group_s_per_photo"]
    summary = {
        "ingest_s_per_photo": ours,
        "ingest_speedup_vs_naive": round(naive / ours, 2),
        "ingest_faces_found": results["facesearch_facenet"]["voc_faces_found"],
        "naive_faces_found": results["naive_facenet"]["voc_faces_found"],
        "voc_faces_annotated": results["facesearch_facenet"]["voc_faces_annotated"],
        "ingest_dlib_s_per_photo": results["facesearch_dlib"]["group_s_per_photo"],
        "dlib_hog_s_per_photo": results["dlib_hog"]["group_s_per_photo"],
        "dlib_hog_faces_found": results["dlib_hog"]["voc_faces_found"],
    }
    doc = {
        "benchmark": "ingest",
        "note": "group photos: samples/faces/group_photos (6 x ~1920x1280); VOC: samples/faces/voc_groups (~500 px) scored against training.xml+testing.xml boxes at IoU>=0.4. InceptionResnetV1 runs random-init weights of the real architecture (same compute as VGGFace2).",
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
        "pipelines": results,
        "summary": summary,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    for exported in (Path(torch.hub.get_dir()).parent / "checkpoints" / "facesearch-onnx").glob(f"{weights.stem}-*.onnx"):
        exported.unlink()  # the throwaway weights' ONNX export (94 MB) is not worth caching
    return doc


def print_table(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("pipeline", "s / 1920-px photo", "faces (group)", "s / VOC photo", "VOC faces found", title="ingest")
    for name, r in doc["pipelines"].items():
        table.add_row(name, f"{r['group_s_per_photo']:.3f}", str(r["group_faces"]), f"{r['voc_s_per_photo']:.3f}",
                      f"{r['voc_faces_found']}/{r['voc_faces_annotated']} ({r['voc_recall']:.0%})")
    console = Console()
    console.print(table)
    console.print(doc["summary"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ingest.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print_table(run(args.out))


if __name__ == "__main__":
    main()
