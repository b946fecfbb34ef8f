"""The local standalone's milvus.yaml: our ports, the stop/restart settings and the segment size reach the file Milvus reads."""

from __future__ import annotations

from pathlib import Path

import yaml

from facesearch.store.local_server import _server_config


def test_written_config_has_the_session_ttl_the_graceful_stop_the_segment_size_and_our_etcd(tmp_path: Path):
    config = _server_config(tmp_path)
    config.base_data_dir = str(tmp_path)
    config.write_config()
    written = yaml.safe_load((tmp_path / "configs" / "milvus.yaml").read_text())
    assert written["common"]["session"]["ttl"] == 10  # a restart after a crash waits this long for the old sessions
    assert written["common"]["gracefulStopTimeout"] == 5  # 2.3.5 never ends a graceful stop on its own
    assert written["dataCoord"]["segment"]["maxSize"] == 1024  # 100k faces in one segment, not two
    assert written["etcd"]["config"]["path"] == str(tmp_path / "configs" / "embed_etcd.yaml")
    etcd = yaml.safe_load(Path(written["etcd"]["config"]["path"]).read_text())
    assert etcd["listen-client-urls"].startswith("http://127.0.0.1:") and etcd["initial-cluster"].startswith("facesearch=")
