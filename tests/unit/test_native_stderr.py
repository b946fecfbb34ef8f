"""faiss's C++ k-means warnings reach the log at DEBUG, not the terminal; other native output is not lost."""

from __future__ import annotations

import logging
import os

import numpy as np

from facesearch.logging_setup import native_stderr_to_log


def small_kmeans() -> None:
    import faiss

    x = np.random.default_rng(0).normal(size=(40, 16)).astype(np.float32)
    faiss.Kmeans(16, 8, niter=2).train(x)  # 40 points for 8 centroids: faiss warns from C++ on fd 2


def test_faiss_kmeans_warnings_go_to_the_debug_log(capfd, caplog):
    small_kmeans()
    assert "WARNING clustering 40 points to 8 centroids" in capfd.readouterr().err  # what the terminal got before

    with caplog.at_level(logging.DEBUG, logger="facesearch.native"), native_stderr_to_log():
        small_kmeans()
        os.write(2, b"a native error that is not noise\n")
    err = capfd.readouterr().err
    assert not [line for line in err.splitlines() if line.startswith("WARNING clustering")]  # no raw faiss line on the terminal
    assert "a native error that is not noise" in err  # written back after the block
    assert [r.levelno for r in caplog.records if "clustering 40 points to 8 centroids" in r.getMessage()] == [logging.DEBUG]
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"  # fd 2 restored
