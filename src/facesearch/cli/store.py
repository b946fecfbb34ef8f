"""``facesearch store start|status|stop``: a local Milvus standalone shared by every process on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from facesearch.cli.common import JsonOpt, emit, run_command, stdout
from facesearch.settings import Settings

store_app = typer.Typer(help="A local Milvus standalone server shared by every FaceSearch process on this machine.")


def _store_doc(state: Any, settings: Settings) -> dict[str, Any]:
    from facesearch.store.moved import read_marker

    moved = read_marker(settings.milvus.uri) if settings.milvus.is_local_lite else None
    lite = {"lite_store_moved_here": moved.lite_path} if moved else {}
    if state is None:
        return {"running": False, "server_dir": str(settings.milvus.server_dir), **lite}
    return {"running": True, "uri": state.uri, "pid": state.pid, "server_dir": state.base_dir, "use": f"export FACESEARCH__MILVUS__URI={state.uri}", **lite}


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
        exited = server.stop()
        emit(
            {"stopped": was is not None, "killed": not exited},
            as_json,
            lambda d: stdout.print(("stopped (killed)" if d["killed"] else "stopped") if d["stopped"] else "was not running"),
        )

    run_command(ctx, body)


@store_app.command("move")
def store_move(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Move the Milvus Lite store (milvus.uri) to the local standalone now; it happens on its own at milvus.auto_server_faces."""

    def body(settings: Settings) -> None:
        from facesearch.errors import BadInputError
        from facesearch.store import FaceStore
        from facesearch.store.lite_to_server import move_to_server

        with FaceStore(settings.milvus) as store:
            if not store.on_lite:
                raise BadInputError(f"milvus.uri {settings.milvus.uri} is not a Milvus Lite store that is still in use (already moved, or a server)")
            served = store.alias_target(settings.milvus.alias)
            moved = move_to_server(store, Path(settings.milvus.server_dir), store.count(served) if served else 0)
        emit(
            {"moved": True, "server_dir": moved.server_dir, "collections": moved.collections, "faces": moved.faces},
            as_json,
            lambda d: stdout.print(f"moved {len(d['collections'])} collections ({d['faces']} served faces) to the standalone in {d['server_dir']}"),
        )

    run_command(ctx, body)
