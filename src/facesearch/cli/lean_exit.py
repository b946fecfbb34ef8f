"""End a read-only command's process without the interpreter's teardown (about 0.4 s of a cold ``identify`` or ``stats``).

After the last atexit handler, CPython frees every module it imported: pymilvus, grpc, pyarrow, pandas,
OpenVINO. Nothing a query command wrote depends on that: its output is flushed, its store closed and
Milvus Lite's server stopped by pymilvus' own atexit handler. So a command that asks for it
(:func:`request`) ends, when the ``facesearch`` entry point returns, the way Python ends in every respect
up to that teardown: threads joined (``threading._shutdown``, which also stops idle executor workers),
atexit handlers run (logging flushed, Milvus Lite released), stdio flushed; then ``os._exit`` with the
same exit status. In-process callers (tests through ``CliRunner``, the API) never reach :func:`finish`.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

_requested = False


def request() -> None:
    """This command holds nothing that needs the interpreter's teardown: end the process quickly."""
    global _requested
    _requested = True


def requested() -> bool:
    return _requested


def finish(code: object) -> None:
    """Exit with ``sys.exit(code)``'s status after joining threads, running atexit handlers and flushing stdio."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # what the interpreter does with sys.exit("message")
        print(code, file=sys.stderr)
        status = 1
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()  # joins non-daemon threads and runs threading's own exit hooks, as Py_Finalize does first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: the interpreter would ignore it too
            pass
    os._exit(status)
