from pathlib import Path

import pytest

from facesearch.errors import ConfigError
from facesearch.settings import Settings, default_config_path, load_settings, parse_overrides, read_yaml


def test_default_yaml_matches_model_defaults():
    """configs/default.yaml documents every key; it must agree with the code's defaults."""
    path = default_config_path()
    assert path is not None and path.name == "default.yaml"
    assert load_settings() == Settings.model_validate(read_yaml(path))
    assert load_settings() == Settings()


def test_env_overrides_yaml(monkeypatch):
    monkeypatch.setenv("FACESEARCH__MILVUS__URI", "http://milvus.example:19530")
    monkeypatch.setenv("FACESEARCH__INDEX__NLIST", "256")
    s = load_settings()
    assert s.milvus.uri == "http://milvus.example:19530"
    assert s.index.nlist == 256
    assert not s.milvus.is_local_lite


def test_env_lists_and_maps(monkeypatch):
    monkeypatch.setenv("FACESEARCH__SWEEP__NPROBE_GRID", "[1, 2, 4]")
    monkeypatch.setenv("FACESEARCH__IDENTIFY__THRESHOLDS", '{"dlib-resnet-v1": 0.5}')
    s = load_settings()
    assert s.sweep.nprobe_grid == (1, 2, 4)
    assert s.identify.thresholds == {"dlib-resnet-v1": 0.5}


def test_overlay_file_and_cli_override_order(tmp_path: Path, monkeypatch):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("index:\n  nlist: 64\n  nprobe: 8\nsearch:\n  k: 3\n")
    monkeypatch.setenv("FACESEARCH__SEARCH__K", "5")
    s = load_settings([overlay], parse_overrides(["index.nprobe=4"]))
    assert (s.index.nlist, s.index.nprobe, s.search.k) == (64, 4, 5)  # file < env < CLI


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        (["index.nlist=abc"], "index.nlist"),
        (["milvus.urii=x"], "milvus.urii"),
        (["encoder.backend=tensorflow"], "encoder.backend"),
        (["index.nlist=8", "index.nprobe=16"], "nprobe"),
    ],
)
def test_validation_error_names_the_key(overrides, names):
    with pytest.raises(ConfigError) as err:
        load_settings(overrides=parse_overrides(overrides))
    assert names in str(err.value)
    assert err.value.exit_code == 2


def test_env_typo_is_reported(monkeypatch):
    monkeypatch.setenv("FACESEARCH__MILVUS__URL", "http://x:1")
    with pytest.raises(ConfigError, match="milvus.url"):
        load_settings()


def test_unknown_section_and_bad_yaml(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("milvuss:\n  uri: x\n")
    with pytest.raises(ConfigError, match="milvuss"):
        load_settings([bad])
    broken = tmp_path / "broken.yaml"
    broken.write_text("index: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings([broken])
    with pytest.raises(ConfigError, match="not found"):
        load_settings([tmp_path / "missing.yaml"])


def test_override_syntax():
    assert parse_overrides(["a.b=1", "a.c=x", "d.e=[1, 2]"]) == {"a": {"b": 1, "c": "x"}, "d": {"e": [1, 2]}}
    with pytest.raises(ConfigError):
        parse_overrides(["no-equals-sign"])


def test_fingerprint_changes_with_settings():
    base = load_settings()
    other = load_settings(overrides={"index": {"nlist": 256}})
    assert base.fingerprint() == load_settings().fingerprint()
    assert base.fingerprint() != other.fingerprint()
    moved = load_settings(overrides={"milvus": {"uri": "http://elsewhere:19530"}, "api": {"port": 9000}, "logging": {"level": "DEBUG"}})
    assert moved.fingerprint() == base.fingerprint()  # where it runs does not change what it builds


QUERY_TIME = [("identify", "thresholds", {"dlib-resnet-v1": 0.3}), ("encoder", "batch_size", 7), ("encoder", "num_threads", 3), ("search", "k", 50)]
BUILD_TIME = [("encoder", "backend", "dlib"), ("detection", "min_det_prob", 0.5), ("detection", "max_side", 640), ("images", "draft_side", 0)]


@pytest.mark.parametrize(("section", "key", "value"), [*QUERY_TIME, ("duplicates", "phash_max_bits", 2)])
def test_fingerprint_ignores_query_time_settings(section: str, key: str, value: object):
    """Changing a threshold or the batch size must not force a rebuild, sweep and promotion."""
    assert load_settings(overrides={section: {key: value}}).fingerprint() == load_settings().fingerprint()


@pytest.mark.parametrize(("section", "key", "value"), [*BUILD_TIME, ("dataset", "labelled_dirs", ["staff"])])
def test_fingerprint_follows_what_changes_vectors(section: str, key: str, value: object):
    assert load_settings(overrides={section: {key: value}}).fingerprint() != load_settings().fingerprint()


def test_encoder_device_is_validated_and_resolved():
    import torch

    from facesearch.models.encoders import resolve_device

    with pytest.raises(ConfigError, match="encoder.device"):
        load_settings(overrides=parse_overrides(["encoder.device=gpu0"]))
    assert load_settings(overrides=parse_overrides(["encoder.device=cuda:1"])).encoder.device == "cuda:1"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="torch sees 0 CUDA device"):
            resolve_device("cuda")


def test_every_section_can_be_set_from_env_and_overrides():
    """The merge layer knows every section of Settings (a new section must not be silently dropped)."""
    from facesearch.settings import Settings, _Sources

    assert set(_Sources.model_fields) == set(Settings.model_fields)
    s = load_settings(overrides={"compute": {"dask_address": "local", "shard_images": 7}})
    assert (s.compute.dask_address, s.compute.shard_images) == ("local", 7)


def test_unknown_sections_are_errors_from_overrides_and_env(monkeypatch):
    with pytest.raises(ConfigError, match="comput"):
        load_settings(overrides={"comput": {"x": 1}})
    monkeypatch.setenv("FACESEARCH__SERACH__K", "3")
    with pytest.raises(ConfigError, match="FACESEARCH__SERACH__K"):
        load_settings()


def test_third_party_info_stays_off_the_terminal_unless_verbose():
    import logging

    from facesearch.logging_setup import QuietThirdParty

    quiet = QuietThirdParty()

    def record(name: str, level: int) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, "msg", None, None)

    assert not quiet.filter(record("prefect", logging.INFO))  # "Starting temporary server on ..."
    assert not quiet.filter(record("distributed.scheduler", logging.INFO))
    assert quiet.filter(record("prefect", logging.WARNING))
    assert quiet.filter(record("prefect.flow_runs", logging.INFO))  # the flow's own summary stays
    assert quiet.filter(record("facesearch.cli", logging.INFO))
