"""``facesearch store start|status|stop``: a local Milvus standalone shared by every process on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from facesearch.cli.common import JsonOpt, emit, run_command, stdout
from facesearch.settings import Settings

store_app = typer.Typer(help="A local Milvus standalone server shared by every FaceSearch process on this machine.")


def _store_doc(state: Any, settings: Settings) -> dict[str, Any]:
    if state is None:
        return {"running": False, "server_dir": str(settings.milvus.server_dir)}
    return {"running": True, "uri": state.uri, "pid": state.pid, "server_dir": state.base_dir,
            "use": f"export FACESEARCH__MILVUS__URI={state.uri}"}


@store_app.command("start")
def store_start(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Start (or find) the local Milvus 2.3.5 standalone in milvus.server_dir; it keeps running after this command."""

    def body(settings: Settings) -> None:
        from facesearch.store.local_server import LocalMilvusServer

        state = LocalMilvusServer(Path(settings.milvus.server_dir)).ensure_running()
        emit(_store_doc(state, settings), as_json, lambda d: stdout.print(f"Milvus running at {d['uri']} (pid {d['pid']})\n{d['use']}"))

    run_command(ctx, body)


@store_app.command("status")
def store_status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Is the local Milvus standalone running, and where?"""

    def body(settings: Settings) -> None:
        from facesearch.store.local_server import LocalMilvusServer

        doc = _store_doc(LocalMilvusServer(Path(settings.milvus.server_dir)).running(), settings)
        emit(doc, as_json, lambda d: stdout.print(f"running at {d['uri']} (pid {d['pid']})" if d["running"] else "not running"))

    run_command(ctx, body)


@store_app.command("stop")
def store_stop(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Stop the local Milvus standalone (its data stays in milvus.server_dir)."""

    def body(settings: Settings) -> None:
        from facesearch.store.local_server import LocalMilvusServer

        server = LocalMilvusServer(Path(settings.milvus.server_dir))
        was = server.running()
        server.stop()
        emit({"stopped": was is not None}, as_json, lambda d: stdout.print("stopped" if d["stopped"] else "was not running"))

    run_command(ctx, body)
