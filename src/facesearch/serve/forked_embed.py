"""Run a cold query's embedding beside the Milvus connection: in a forked child where that is safe, else a thread.

A cold ``facesearch identify`` spends most of its time importing: pymilvus, pandas and pyarrow for the
store; OpenVINO and OpenCV for the models. Imports hold the GIL, so a thread barely overlaps them; a child
process forked before either starts runs on the other core. The child sends back a picklable result (faces
or the error the photo gave) and exits without the interpreter's teardown. Anything unusual (no ``fork``,
other threads or gRPC already in the process, a child that dies or cannot pickle its answer) falls back to
the thread, so the result never depends on the path.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from facesearch.errors import FaceSearchError

log = logging.getLogger(__name__)

T = TypeVar("T")
CHILD_TIMEOUT_S = 120.0  # a model load from cold is ~1 s; a child silent this long has hung


class _Pending:
    """The embedding's result, from the child or the thread; None when it failed (the service embeds itself)."""

    def __init__(self, get: Callable[[], Any]) -> None:
        self._get = get

    def result(self) -> Any:
        try:
            return self._get()
        except FaceSearchError:  # the configured encoder cannot load here: the collection's own one may
            return None


def fork_is_safe() -> bool:
    """Forking copies only the calling thread: safe while no other thread (or gRPC's) exists yet."""
    return "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1 and "grpc" not in sys.modules


@contextmanager
def embed_aside(work: Callable[[], T]) -> Iterator[_Pending]:
    """Start ``work`` (the cold embedding) beside the caller; ``.result()`` waits for it."""
    if fork_is_safe():
        forked = _fork(work)
        if forked is not None:
            pending, child = forked
            try:
                yield pending
            finally:
                if child.is_alive():  # the caller failed first (e.g. Milvus unreachable): the answer is not wanted
                    child.terminate()
            return
    with ThreadPoolExecutor(1, thread_name_prefix="warm-models") as pool:
        future: Future[T] = pool.submit(work)
        yield _Pending(future.result)


def _fork(work: Callable[[], Any]) -> tuple[_Pending, Any] | None:
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    try:
        child = context.Process(target=_child, args=(work, send), name="facesearch-embed", daemon=True)
        child.start()
    except OSError as exc:
        log.debug("cannot fork the embedding (%s); a thread runs it", exc)
        return None
    send.close()
    log.debug("embedding the query in forked child %d", child.pid)

    def result() -> Any:
        try:
            if receive.poll(CHILD_TIMEOUT_S):
                answer = receive.recv()
                if answer is not None:
                    return answer
        except (EOFError, OSError) as exc:
            log.debug("the embedding child ended without an answer: %s", exc)
        finally:
            receive.close()
            child.join(timeout=5)
        log.debug("embedding in this process instead")
        return work()

    return _Pending(result), child


def _child(work: Callable[[], Any], send: Any) -> None:
    status = 0
    try:
        answer = work()
        try:
            send.send(answer)
        except Exception:  # noqa: BLE001  (an answer that cannot be pickled: the parent embeds itself)
            send.send(None)
    except BaseException:  # noqa: BLE001  (the parent redoes the work and reports its error)
        status = 1
        try:
            send.send(None)
        except OSError:
            pass
    finally:
        send.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)  # no interpreter teardown: the parent holds every resource that matters
