"""Flow wiring that needs no Prefect server: the scheduled deployment and the flow parameters."""

from facesearch.settings import load_settings
from flows.common import flow_settings


def test_scheduled_deployment_uses_cron_from_settings():
    from flows.serve import deployment

    settings = load_settings(overrides={"schedule": {"cron": "15 4 * * 1", "deployment_name": "weekly"}})
    dep = deployment(settings)
    assert dep.name == "weekly"
    assert [s.schedule.cron for s in dep.schedules] == ["15 4 * * 1"]


def test_flow_parameters_become_settings(tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("search:\n  k: 7\n")
    s = flow_settings([str(overlay)], ["index.nprobe=2"])
    assert (s.search.k, s.index.nprobe) == (7, 2)


def test_the_scheduled_flow_retries_a_failed_run_once():
    from flows.reindex import reindex_flow
    from flows.serve import scheduled_flow

    settings = load_settings()
    flow = scheduled_flow(settings)
    assert (flow.retries, flow.retry_delay_seconds) == (settings.schedule.retries, settings.schedule.retry_delay_s) == (1, 300.0)
    assert flow.fn is reindex_flow.fn and not reindex_flow.retries  # a manual `facesearch reindex` fails fast


def test_a_running_prefect_server_is_found_and_a_closed_port_is_not():
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from flows.common import running_prefect_api

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/api"
        assert running_prefect_api(url) == url
    finally:
        server.shutdown()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert running_prefect_api(f"http://127.0.0.1:{closed}/api") is None


def test_failed_prefect_server_start_leaves_no_process(tmp_path):
    """A server that never answers /health is stopped, not leaked (defect 8: Popen ran outside the try)."""
    import os
    import socket
    import sys
    import time

    import pytest

    from flows.serve import local_prefect_server

    pid_file = tmp_path / "pid"
    sleeper = [sys.executable, "-c", "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)", str(pid_file)]
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="did not become healthy"), local_prefect_server(sleeper, url=f"http://127.0.0.1:{port}/api", timeout_s=3):
        pass
    assert time.monotonic() - started < 30
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
