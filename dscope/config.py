"""Root configuration: load, validate and query ``config/config.json``.

The file is validated as a whole when it is loaded: an unknown key, a wrong
type or an out-of-range value raises :class:`dscope.errors.ConfigError` whose
message names the file and the dotted key, e.g.::

    config_invalid: config/config.json: profiles.fast_scan.detection.do2mr_gamma:
    Input should be greater than 0 (got -1)

Each section's model lives next to the code that uses it; this module only
composes them.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from dscope.daemon.config import DaemonConfig
from dscope.errors import ConfigError
from dscope.jsonio import read_json_file
from dscope.hardware.config import CameraConfig
from dscope.inspection.calibration import CalibrationParams
from dscope.inspection.detect import DetectionParams
from dscope.inspection.classify import LOGISTIC_FEATURES, ClassificationParams, LogisticModel
from dscope.inspection.trees import TreeEnsemble
from dscope.inspection.tiers import FineTierParams
from dscope.inspection.localize import LocalizationParams
from dscope.inspection.preprocess import PreprocessParams
from dscope.params import StrictModel

#: Folder of the shipped configuration (repository checkout / editable install).
PACKAGE_ROOT = Path(__file__).resolve().parent
DEFAULT_CONFIG_DIR = PACKAGE_ROOT.parent / "config"


def config_dir() -> Path:
    """Folder holding ``config.json`` and ``rules/``; ``DSCOPE_CONFIG_DIR`` overrides it."""
    env = os.environ.get("DSCOPE_CONFIG_DIR")
    return Path(env) if env else DEFAULT_CONFIG_DIR


def default_config_path() -> Path:
    return config_dir() / "config.json"


class FiberTypeConfig(StrictModel):
    """A named fiber type: nominal diameters and the rule set that grades it."""

    description: str = ""
    mode: Literal["sm", "mm", "large_core", "custom"] = "custom"
    core_um: float = Field(gt=0)
    cladding_um: float = Field(gt=0)
    rule_set: str = Field(min_length=1)
    graded_index: bool = False

    @model_validator(mode="after")
    def _core_inside_cladding(self):
        if self.core_um >= self.cladding_um:
            raise ValueError(f"core_um ({self.core_um}) must be smaller than cladding_um ({self.cladding_um})")
        return self


class ProfileParams(StrictModel):
    """A processing profile: how hard to look."""

    description: str = ""
    localization: LocalizationParams
    detection: DetectionParams
    fine_tier: FineTierParams | None = Field(
        default=None, description="second, finer detection pass over the glass zones (fast profiles); null = one pass"
    )
    logistic: LogisticModel | None = Field(
        default=None,
        description="this profile's own classifier weights, trained on its own detections (benchmarks/train_classifier.py "
        "--profile NAME); null = classification.logistic",
    )
    trees_model: str | None = Field(
        default=None,
        description="this profile's own boosted-trees file (benchmarks/train_classifier.py --model trees --profile "
        "NAME), found like classification.trees_model; null = classification.trees_model",
    )
    trees: TreeEnsemble | None = Field(default=None, exclude=True, description="the loaded trees_model")


class IOConfig(StrictModel):
    """Which files are images and which images are sane."""

    image_extensions: list[str] = Field(min_length=1)
    min_image_side_px: int = Field(ge=16)
    max_image_pixels: int = Field(ge=1024)
    max_file_bytes: int = Field(ge=1024)


class ScaleConfig(StrictModel):
    """How the micrometre scale is chosen and cross-checked."""

    calibration_file: str = "calibration.json"
    calibration_disagreement_warn_fraction: float = Field(gt=0, lt=1)
    default_nominal_cladding_um: float = Field(gt=0)


class OutputConfig(StrictModel):
    """What the batch writes."""

    write_json: bool = True
    write_annotated: bool = True
    write_defect_csv: bool = True
    write_plots: bool = True
    annotated_max_side_px: int = Field(ge=256)
    annotated_font_scale: float = Field(gt=0)
    annotated_line_px: int = Field(ge=1)
    contour_max_points: int = Field(ge=8)
    save_zone_crops: bool = False


class LoggingConfig(StrictModel):
    console_level: Literal["debug", "info", "warning", "error"] = "info"
    file_level: Literal["debug", "info", "warning", "error"] = "debug"


class BatchConfig(StrictModel):
    default_workers: int = Field(ge=0, description="0 = one per CPU core")
    image_timeout_s: float = Field(gt=0, description="per-image limit; a slower image is killed and reported as ERROR timeout")
    worker_start_timeout_s: float = Field(gt=0, description="a worker that has not imported the pipeline by then is replaced")
    opencv_threads_per_worker: int = Field(ge=0)


class PipelineConfig(StrictModel):
    """Glue between stages."""

    roi_margin_px: int = Field(ge=0, le=512, description="pixels added around the outermost analysed zone")


class GradingConfig(StrictModel):
    """Decision rule of the pipeline's grading (the rule sets hold the limits)."""

    guard_band_px: float = Field(
        default=1.0, ge=0, le=10,
        description="guarded acceptance: pixels added to every measured size before it is compared with the "
        "rule set's bins (0 = sizes graded as measured)",
    )


class Config(StrictModel):
    """The whole configuration file."""

    schema_version: Literal[1] = 1
    default_profile: str
    default_fiber_type: str
    fiber_types: dict[str, FiberTypeConfig]
    io: IOConfig
    batch: BatchConfig
    scale: ScaleConfig
    preprocess: PreprocessParams
    pipeline: PipelineConfig
    grading: GradingConfig = Field(default_factory=GradingConfig)
    calibration: CalibrationParams
    classification: ClassificationParams
    profiles: dict[str, ProfileParams]
    output: OutputConfig
    logging: LoggingConfig
    daemon: DaemonConfig
    camera: CameraConfig
    source_path: str | None = Field(default=None, exclude=True)

    @field_validator("profiles")
    @classmethod
    def _needs_standard_profiles(cls, v):
        missing = {"fast_scan", "deep_inspection"} - set(v)
        if missing:
            raise ValueError(f"missing required profiles: {sorted(missing)}")
        return v

    @model_validator(mode="after")
    def _defaults_exist(self):
        if self.default_profile not in self.profiles:
            raise ValueError(f"default_profile {self.default_profile!r} is not one of {sorted(self.profiles)}")
        if self.default_fiber_type not in self.fiber_types:
            raise ValueError(
                f"default_fiber_type {self.default_fiber_type!r} is not one of {sorted(self.fiber_types)}"
            )
        return self

    def profile(self, name: str | None = None) -> ProfileParams:
        name = name or self.default_profile
        try:
            return self.profiles[name]
        except KeyError:
            raise ConfigError(
                "config_invalid", f"unknown profile {name!r}; choose one of {sorted(self.profiles)}"
            ) from None

    def classification_for(self, profile: str | None = None) -> ClassificationParams:
        """The ``classification`` section with the profile's own trained models, where it has them."""
        prof = self.profile(profile)
        update = {}
        if prof.logistic is not None:
            update["logistic"] = prof.logistic
        if prof.trees is not None:
            update["trees"] = prof.trees
        return self.classification.model_copy(update=update) if update else self.classification

    def fiber_type(self, name: str | None = None) -> FiberTypeConfig | None:
        return self.fiber_types.get(name or self.default_fiber_type)


def _format_validation_error(exc: ValidationError, path: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        got = err.get("input")
        got_s = ""
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        else:
            msg = err["msg"]
            if not isinstance(got, (dict, list)):
                got_s = f" (got {got!r})"
        lines.append(f"{path}: {key}: {msg}{got_s}")
    return "; ".join(lines)


def strip_comments(data):
    """Drop every ``"$comment"`` key (documentation inside JSON files), recursively."""
    if isinstance(data, dict):
        return {k: strip_comments(v) for k, v in data.items() if k != "$comment"}
    if isinstance(data, list):
        return [strip_comments(v) for v in data]
    return data


def models_dirs(source: str | None) -> list[Path]:
    """Folders searched for a relative model file name: ``models/`` beside the config file, then the shipped one."""
    dirs = []
    if source and not source.startswith("<"):
        dirs.append(Path(source).resolve().parent / "models")
    shipped = config_dir() / "models"
    if shipped.resolve() not in [d.resolve() for d in dirs]:
        dirs.append(shipped)
    return dirs


def load_trees_model(name: str, source: str | None, key: str) -> TreeEnsemble:
    """Load and validate a boosted-trees file named in the config (``key`` names it in errors)."""
    p = Path(name).expanduser()
    if not p.is_absolute():
        dirs = models_dirs(source)
        found = [d / name for d in dirs if (d / name).is_file()]
        if not found:
            where = ", ".join(str(d) for d in dirs)
            raise ConfigError("config_invalid", f"{source}: {key}: model file {name!r} not found in {where}",
                              file=source or "")
        p = found[0]
    try:
        st = p.stat()
    except OSError:
        st = None  # read_json_file below reports the missing or unreadable file
    try:
        model = _read_trees_file(str(p), st.st_mtime_ns if st else 0, st.st_size if st else -1)
    except ValidationError as exc:
        raise ConfigError("config_invalid", f"{source}: {key}: {_format_validation_error(exc, str(p))}",
                          file=source or "") from None
    if list(model.features) != list(LOGISTIC_FEATURES):
        # the classifier feeds the trees classify.feature_vector: a model trained on other inputs would
        # silently read the wrong features
        raise ConfigError("config_invalid", f"{source}: {key}: {p}: features must be {list(LOGISTIC_FEATURES)}",
                          file=source or "")
    return model


@lru_cache(maxsize=8)
def _read_trees_file(path: str, mtime_ns: int, size: int) -> TreeEnsemble:
    """Parse a trees file once per (path, modification time, size): configs reloaded (SIGHUP, workers) share it."""
    data = read_json_file(path, ConfigError, "config_invalid", what="model file")
    return TreeEnsemble.model_validate(strip_comments(data))


def _attach_models(cfg: Config, source: str) -> Config:
    """Load the trees files the config names; a 'trees' classifier without a model file is an error."""
    cls = cfg.classification
    update: dict = {}
    if cls.trees_model:
        update["classification"] = cls.model_copy(
            update={"trees": load_trees_model(cls.trees_model, source, "classification.trees_model")}
        )
    elif cls.classifier == "trees":
        raise ConfigError("config_invalid", f"{source}: classification.trees_model: needed when classifier is 'trees'",
                          file=source)
    profiles = {}
    for name, prof in cfg.profiles.items():
        if prof.trees_model:
            key = f"profiles.{name}.trees_model"
            profiles[name] = prof.model_copy(update={"trees": load_trees_model(prof.trees_model, source, key)})
    if profiles:
        update["profiles"] = {**cfg.profiles, **profiles}
    return cfg.model_copy(update=update) if update else cfg


def parse_config(data: dict, source: str = "<memory>") -> Config:
    """Validate a config mapping; raise :class:`ConfigError` naming the key and the source.

    ``"$comment"`` keys are allowed anywhere and ignored.  Model files named by
    ``trees_model`` keys are loaded and validated too.
    """
    try:
        cfg = Config.model_validate(strip_comments(data))
    except ValidationError as exc:
        raise ConfigError("config_invalid", _format_validation_error(exc, source), file=source) from None
    cfg = _attach_models(cfg, source)
    return cfg.model_copy(update={"source_path": source})


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Load and validate a configuration file (the shipped default when ``path`` is None)."""
    p = Path(path) if path else default_config_path()
    data = read_json_file(p, ConfigError, "config_invalid", what="config file")
    if not isinstance(data, dict):
        raise ConfigError("config_invalid", f"{p}: the top level must be a JSON object", file=str(p))
    return parse_config(data, str(p))
