"""How good is the clustering? Stored persons against labelled folders (DIR/<person>/*.jpg).

Faces are matched to the labelled photos by the photo's sha256, so the folder need not be where
the photos were indexed from. Unassigned faces count as people of one face each (they are split
from the rest of their person, never merged). Metrics: pairwise precision/recall (over pairs of
faces), BCubed precision/recall/F1 (per face, averaged), the number of labelled people whose faces
went to more than one person ("split") and of persons holding faces of more than one label ("merged").
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from facesearch.errors import BadInputError
from facesearch.ingest.images import file_sha256, iter_image_files
from facesearch.settings import Settings
from facesearch.store import FaceStore, quote
from facesearch.store.people_store import PeopleStore


def clustering_scores(truth: Sequence[str], predicted: Sequence[str | None]) -> dict[str, Any]:
    """Scores of ``predicted`` person labels (None = unassigned) against ``truth`` labels, one pair per face."""
    n = len(truth)
    pred = [p if p is not None else f"\0unassigned{i}" for i, p in enumerate(predicted)]
    both = Counter(zip(truth, pred, strict=True))
    by_truth, by_pred = Counter(truth), Counter(pred)

    def pairs(counts: Counter[Any]) -> int:
        return sum(c * (c - 1) // 2 for c in counts.values())

    same_both, same_pred, same_truth = pairs(both), pairs(by_pred), pairs(by_truth)
    b_prec = sum(both[(t, p)] / by_pred[p] for t, p in zip(truth, pred, strict=True)) / n if n else 0.0
    b_rec = sum(both[(t, p)] / by_truth[t] for t, p in zip(truth, pred, strict=True)) / n if n else 0.0
    labels_of: dict[str, set[str]] = defaultdict(set)
    persons_of: dict[str, set[str]] = defaultdict(set)
    for t, p in zip(truth, predicted, strict=True):
        if p is not None:
            labels_of[p].add(t)
            persons_of[t].add(p)
    return {
        "faces": n,
        "labels": len(by_truth),
        "persons": len(labels_of),
        "unassigned": sum(p is None for p in predicted),
        "pairwise_precision": round(same_both / same_pred, 4) if same_pred else 1.0,
        "pairwise_recall": round(same_both / same_truth, 4) if same_truth else 1.0,
        "bcubed_precision": round(b_prec, 4),
        "bcubed_recall": round(b_rec, 4),
        "bcubed_f1": round(2 * b_prec * b_rec / (b_prec + b_rec), 4) if b_prec + b_rec else 0.0,
        "split": sum(len(persons_of[t]) > 1 or (len(persons_of[t]) == 1 and by_truth[t] > sum(both[(t, p)] for p in persons_of[t])) for t in by_truth),
        "merged": sum(len(labels) > 1 for labels in labels_of.values()),
    }


def evaluate_folder(store: FaceStore, settings: Settings, collection: str, folder: Path) -> dict[str, Any]:
    """Scores of the stored persons on the faces of the labelled photos under ``folder``."""
    if not folder.is_dir():
        raise BadInputError(f"{folder} is not a folder (expected DIR/<person>/*.jpg)")
    label_of: dict[str, str] = {}
    for item in iter_image_files([folder], settings.images):
        if isinstance(item, Path) and item.parent != folder:
            label_of[file_sha256(item.read_bytes())] = item.parent.name
    if not label_of:
        raise BadInputError(f"no labelled photos under {folder} (expected DIR/<person>/*.jpg)")
    rows: list[dict[str, Any]] = []
    shas = sorted(label_of)
    for i in range(0, len(shas), 500):
        expr = f"image_sha256 in [{', '.join(quote(s) for s in shas[i : i + 500])}]"
        rows += store.query(collection, expr, ["id", "image_sha256"])
    if not rows:
        raise BadInputError(f"none of the photos under {folder} is indexed in {collection} (facesearch index {folder})")
    people = PeopleStore(store)
    assigned = people.assignments()
    persons = people.persons(store.encoder_of(collection) or "")
    truth = [label_of[r["image_sha256"]] for r in rows]
    predicted = [str(a.person_id) if (a := assigned.get(int(r["id"]))) and a.person_id in persons else None for r in rows]
    return {"folder": str(folder), "collection": collection, "photos": len(label_of), **clustering_scores(truth, predicted)}
