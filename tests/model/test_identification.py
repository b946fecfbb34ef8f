"""Real dlib ResNet embeddings: leave-one-out identification on the labelled johns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesearch.ingest.images import load_image
from facesearch.ingest.indexer import index_jobs, plan_jobs
from facesearch.serve.identify import identify_faces
from facesearch.serve.serving import ingest_collection

pytestmark = pytest.mark.model


def test_leave_one_out_identification(johns: Path, settings, store, dlib_encoder):
    collection = ingest_collection(store, settings, dlib_encoder)
    jobs, _ = plan_jobs([johns], settings, identity_from_folder=True)
    report = index_jobs(jobs, settings, store, dlib_encoder, collection)
    assert report.images_skipped == []
    threshold = settings.identify.thresholds[dlib_encoder.encoder_id]
    correct = unknown = 0
    for job in jobs:
        image = load_image(job.path, settings.images)
        faces = dlib_encoder.encode_loaded([image])[0]
        result = identify_faces(store, collection, faces, threshold, settings.index.nprobe, exclude_sha256=image.sha256)[0]
        correct += result.identity == job.identity
        unknown += result.identity is None
    accuracy = correct / len(jobs)
    print(f"\nleave-one-out top-1 identification (dlib-resnet-v1, {len(jobs)} photos, 5 people): {accuracy:.3f}, unknown: {unknown}")
    assert accuracy >= 0.95


def test_same_person_closer_than_others(johns: Path, dlib_encoder, settings):
    people = sorted(p for p in johns.iterdir() if p.is_dir())[:3]
    vecs = {p.name: [dlib_encoder.encode([load_image(f, settings.images).image])[0][0].embedding for f in sorted(p.glob("*.jpg"))[:4]] for p in people}
    within = [np.linalg.norm(a - b) for v in vecs.values() for i, a in enumerate(v) for b in v[i + 1 :]]
    across = [np.linalg.norm(a - b) for x in vecs for y in vecs if x < y for a in vecs[x] for b in vecs[y]]
    assert np.mean(within) < np.mean(across) - 0.2


def test_embeddings_are_unit_float32_and_flip_stable(johns: Path, dlib_encoder, settings):
    from PIL import ImageOps

    image = load_image(next(johns.glob("John_Simm/*.jpg")), settings.images).image
    face = dlib_encoder.encode([image])[0][0]
    mirrored = dlib_encoder.encode([ImageOps.mirror(image)])[0][0]
    assert face.embedding.dtype == np.float32 and face.embedding.shape == (128,)
    assert abs(np.linalg.norm(face.embedding) - 1) < 1e-5
    assert np.linalg.norm(face.embedding - mirrored.embedding) < settings.identify.thresholds["dlib-resnet-v1"]
