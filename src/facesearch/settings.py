"""Typed settings: ``configs/default.yaml`` (+ optional overlay files) < ``FACESEARCH__*`` env < CLI.

Nothing happens at import. Call :func:`load_settings` once at the edge (CLI, flow, API)
and pass the returned :class:`Settings` down explicitly.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, model_validator
from pydantic_settings import BaseSettings, InitSettingsSource, SettingsConfigDict

from facesearch.errors import ConfigError

ENV_PREFIX = "FACESEARCH__"
CONFIG_ENV = "FACESEARCH_CONFIG"  # colon-separated overlay files, applied after configs/default.yaml


from facesearch.settings_sections import (  # noqa: F401  (re-exported: import sections from facesearch.settings)
    _Section,
    EncoderSettings,
    DetectionSettings,
    InferenceSettings,
    ImageSettings,
    MilvusSettings,
    IndexSettings,
    SearchSettings,
    IdentifySettings,
    PeopleSettings,
    DuplicateSettings,
    PathSettings,
    DatasetSettings,
    ComputeSettings,
    ValidationSettings,
    SweepSettings,
    PromotionSettings,
    CapacitySettings,
    TrackingSettings,
    ScheduleSettings,
    ApiSettings,
    LoggingSettings,
)


class Settings(_Section):
    """All FaceSearch settings. Sections mirror ``configs/default.yaml``."""

    encoder: EncoderSettings = EncoderSettings()
    detection: DetectionSettings = DetectionSettings()
    inference: InferenceSettings = InferenceSettings()
    images: ImageSettings = ImageSettings()
    milvus: MilvusSettings = MilvusSettings()
    index: IndexSettings = IndexSettings()
    search: SearchSettings = SearchSettings()
    identify: IdentifySettings = IdentifySettings()
    duplicates: DuplicateSettings = DuplicateSettings()
    people: PeopleSettings = PeopleSettings()
    paths: PathSettings = PathSettings()
    dataset: DatasetSettings = DatasetSettings()
    validation: ValidationSettings = ValidationSettings()
    compute: ComputeSettings = ComputeSettings()
    sweep: SweepSettings = SweepSettings()
    promotion: PromotionSettings = PromotionSettings()
    tracking: TrackingSettings = TrackingSettings()
    capacity: CapacitySettings = CapacitySettings()
    schedule: ScheduleSettings = ScheduleSettings()
    api: ApiSettings = ApiSettings()
    logging: LoggingSettings = LoggingSettings()

    @model_validator(mode="after")
    def _nprobe_within_nlist(self) -> Settings:
        if self.index.nprobe > self.index.nlist:
            raise ValueError(f"index.nprobe ({self.index.nprobe}) must not exceed index.nlist ({self.index.nlist})")
        return self

    def fingerprint(self) -> str:
        """Stable hash of the settings that shape a built collection (not where things run or log)."""
        exclude: dict[str, Any] = {section: True for section in OPERATIONAL_SECTIONS} | {section: set(keys) for section, keys in OPERATIONAL_KEYS.items()}
        blob = json.dumps(self.model_dump(mode="json", exclude=exclude), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# Sections that say where and how FaceSearch runs or queries, not what it builds: left out of fingerprint().
# identify/search/duplicates/people are read at query time only; changing them must not force a rebuild.
# inference (engine, precision) moves a vector by < 0.001 cosine: the same embedding space, not a new build.
OPERATIONAL_SECTIONS = ("inference", "milvus", "paths", "tracking", "schedule", "api", "logging", "compute", "identify", "search", "duplicates", "people", "capacity")
# Keys of built-shaping sections that change neither the stored vectors nor the index.
OPERATIONAL_KEYS = {
    "encoder": ("batch_size", "num_threads", "allow_download"),
    "images": ("load_workers",),
    "dataset": ("dvc_remote", "dvc_remote_name", "push"),
    "promotion": ("abandoned_after_h", "lock_timeout_s"),
}


class _Sources(BaseSettings):
    """Merges the layers; validated afterwards into the plain :class:`Settings` model."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore")

    encoder: dict[str, Any] = {}
    detection: dict[str, Any] = {}
    inference: dict[str, Any] = {}
    images: dict[str, Any] = {}
    milvus: dict[str, Any] = {}
    index: dict[str, Any] = {}
    search: dict[str, Any] = {}
    identify: dict[str, Any] = {}
    duplicates: dict[str, Any] = {}
    people: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    dataset: dict[str, Any] = {}
    validation: dict[str, Any] = {}
    compute: dict[str, Any] = {}
    sweep: dict[str, Any] = {}
    promotion: dict[str, Any] = {}
    tracking: dict[str, Any] = {}
    capacity: dict[str, Any] = {}
    schedule: dict[str, Any] = {}
    api: dict[str, Any] = {}
    logging: dict[str, Any] = {}


def default_config_path() -> Path | None:
    """``configs/default.yaml`` in the working directory, else beside the source checkout."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = root / "configs" / "default.yaml"
        if candidate.is_file():
            return candidate
    return None


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["milvus.uri=http://h:19530", "index.nlist=256"]`` -> nested dict (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {pair!r} must look like section.key=value")
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw) if raw else ""
    return nested


def _parse_env_lists(data: Any) -> Any:
    """Env values arrive as strings: ``FACESEARCH__SWEEP__NPROBE_GRID='[1, 2, 4]'`` becomes a list."""
    if isinstance(data, dict):
        return {k: _parse_env_lists(v) for k, v in data.items()}
    if isinstance(data, str) and len(data) >= 2 and data[0] in "[{" and data[-1] in "]}":
        try:
            return yaml.safe_load(data)
        except yaml.YAMLError:
            return data
    return data


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(settings)"
        given = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        lines.append(f"{key}: {err['msg']}{given}")
    return "invalid configuration: " + "; ".join(lines)


def load_settings(
    config_files: list[Path] | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    use_default_file: bool = True,
) -> Settings:
    """Build :class:`Settings` from default.yaml, overlay files, ``FACESEARCH__*`` env and overrides."""
    files: list[Path] = []
    if use_default_file and (default := default_config_path()):
        files.append(default)
    files += [Path(p) for p in os.environ.get(CONFIG_ENV, "").split(os.pathsep) if p]
    files += [Path(p) for p in (config_files or [])]
    file_data: dict[str, Any] = {}
    for path in files:
        file_data = _deep_merge(file_data, read_yaml(path))

    unknown = sorted(set(file_data) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"invalid configuration: unknown section(s) {', '.join(unknown)}")
    unknown = sorted(set(overrides or {}) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"invalid configuration: unknown section(s) in overrides: {', '.join(unknown)}")
    unknown = sorted(
        name for name in os.environ
        if name.upper().startswith(ENV_PREFIX) and name[len(ENV_PREFIX):].split("__")[0].lower() not in Settings.model_fields
    )
    if unknown:
        raise ConfigError(f"invalid configuration: environment variable(s) {', '.join(unknown)} name no settings section")

    class _Layered(_Sources):
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):  # type: ignore[override]  # noqa: ANN001
            return (init_settings, env_settings, InitSettingsSource(settings_cls, init_kwargs=file_data))

    try:
        layered = _Layered(**(overrides or {}))
        return Settings.model_validate(_parse_env_lists(layered.model_dump()))
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None

