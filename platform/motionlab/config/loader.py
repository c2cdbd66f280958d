"""Read an experiment YAML in the seed format and hand back a validated `ExperimentConfig`.

Order matters and is fixed: base file, then the named preset merged over it, then CLI `key=value`
overrides, then `${...}` interpolation, then pydantic validation. Interpolation comes after the
merges so that overriding `global_vars.image_size` (or `data.image_size`) carries through to every
value derived from it, exactly as editing the file would.

Every failure is a one-line `ConfigError` naming the file, the key and the fix; nothing multi-line
from YAML, OmegaConf or pydantic escapes.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationKeyError, OmegaConfBaseException
from pydantic import BaseModel, ValidationError

from motionlab.config.motion import MOTION_DISCRIMINATOR, MotionConfig
from motionlab.config.schema import (
    ERROR_TYPE,
    PER_MODALITY_FIELDS,
    PROVENANCE_FIELDS,
    ConfigError,
    ExperimentConfig,
)

CONFIG_DIR_ENV = "MOTIONLAB_CONFIG_DIR"
PRESETS_KEY = "presets"
YAML_SUFFIXES = (".yaml", ".yml")
_OVERRIDE_KEY = re.compile(r"[A-Za-z_][\w-]*(?:\.[\w-]+|\[\d+\])*")
_KEY_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


# -- interpolation resolvers ----------------------------------------------------------------------------
# Integer arithmetic lets a file derive token-grid lengths from the image size, so an override of the
# image size or patch size keeps `max_seq_lens` consistent instead of failing validation.


def _mul(a: int, b: int) -> int:
    return a * b


def _div(a: int, b: int) -> int:
    # Floor division, and 0 for a zero divisor: a size that does not tile, or a zero patch size, is
    # then reported by validation against the key the user set, not against this derived value.
    return a // b if b else 0


def _register_resolvers() -> None:
    register = getattr(OmegaConf, "register_resolver", None)
    for name, fn in (("mul", _mul), ("div", _div)):
        if OmegaConf.has_resolver(name):
            continue
        if register is not None:  # OmegaConf >= 2.4
            register(name, fn, annotation_validation="error")
        else:
            OmegaConf.register_new_resolver(name, fn)


_register_resolvers()


# -- YAML reading ---------------------------------------------------------------------------------------


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    pass


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `6e-4` as a float (YAML 1.2, as OmegaConf does) and rejects duplicate keys.

    A duplicated `data:` block would otherwise silently drop the first one.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                problem = f"key '{key}' appears twice (lines {seen[key]} and {line})"
                raise _DuplicateKeyError(None, None, problem, key_node.start_mark)
            if isinstance(key, str | int | float | bool):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _read_yaml(path: Path, label: str) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except _DuplicateKeyError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else "?"
        problem = e.problem or "duplicate key"
        raise ConfigError(label, f"line {line}", problem, "keep one of the two") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        context = e.context or ""
        if context and e.context_mark and e.context_mark.line != getattr(mark, "line", None):
            context += f" started on line {e.context_mark.line + 1}"
        problem = ": ".join(part for part in (context, e.problem) if part) or "invalid YAML"
        raise ConfigError(
            label,
            where,
            problem,
            "fix the YAML syntax; quote values that contain ': ' and `${...}` inside [ ] lists",
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(label, "YAML", str(e), "fix the YAML syntax") from None
    if data is None:
        raise ConfigError(label, "(file)", "is empty", "write an experiment config (see experiments/configs)")
    if not isinstance(data, dict):
        raise ConfigError(
            label,
            "(file)",
            f"top level is a {type(data).__name__}, not a mapping",
            "write the config as `key: value` lines",
        )
    return data


# -- locating files -------------------------------------------------------------------------------------


def config_dir() -> Path:
    """Where bare names like "m4" are looked up.

    $MOTIONLAB_CONFIG_DIR wins so a cluster job can point at shared storage; otherwise the repository's
    experiments/configs next to this package (an editable install); otherwise ./experiments/configs.
    """
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return Path(env).expanduser()
    in_repo = Path(__file__).resolve().parents[3] / "experiments" / "configs"
    if in_repo.is_dir():
        return in_repo
    return Path.cwd() / "experiments" / "configs"


def available_configs(directory: Path | None = None) -> list[str]:
    """Stems of the YAML files a bare name can refer to."""
    directory = directory or config_dir()
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.iterdir() if p.suffix in YAML_SUFFIXES and p.is_file())


def _locate(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    as_path = Path(text).expanduser()
    looks_like_path = (
        isinstance(name_or_path, Path) or "/" in text or os.sep in text or text.endswith(YAML_SUFFIXES)
    )
    directory = config_dir()
    if looks_like_path:
        candidates = [as_path]
        if as_path.parent == Path("."):
            candidates.append(directory / as_path.name)
    else:
        candidates = [directory / f"{text}{suffix}" for suffix in YAML_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    stems = available_configs(directory)
    raise ConfigError(
        text,
        "config file",
        f"not found (looked for {', '.join(str(c) for c in candidates)})",
        f"use one of {', '.join(stems) if stems else '(none in ' + str(directory) + ')'} "
        f"or the path of a YAML file; set ${CONFIG_DIR_ENV} to look elsewhere",
    )


# -- overrides ------------------------------------------------------------------------------------------


def _key_parts(key: str) -> list[str | int]:
    return [int(index) if index else name for index, name in _KEY_PART.findall(key)]


def _dotted(parts: Sequence[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _parse_override(label: str, text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(
            label, f"override '{text}'", "has no '='", "write overrides as key=value, e.g. model.dim=256"
        )
    key, _, raw = text.partition("=")
    key = key.strip()
    if not _OVERRIDE_KEY.fullmatch(key):
        raise ConfigError(
            label,
            f"override '{text}'",
            f"'{key}' is not a dotted key",
            "write overrides as key=value with a dotted key, e.g. data.image_size=128 or max_seq_lens[2]=32",
        )
    try:
        value = yaml.load(raw, Loader=_Loader) if raw.strip() else None
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(
            label,
            f"override '{text}'",
            f"value is not valid YAML ({problem})",
            "quote the value or close its brackets, e.g. input_alphas=[1,1,1,1]",
        ) from None
    return key, value


def _apply_override(label: str, cfg: DictConfig, text: str, key: str, value: Any) -> None:
    parts = _key_parts(key)
    node: Any = OmegaConf.to_container(cfg, resolve=False)
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, dict):
            if part not in node:
                break  # a new section: the unknown-key check names it with a suggestion
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            break
        if not isinstance(node, dict | list):
            prefix = _dotted(parts[: depth + 1])
            raise ConfigError(
                label,
                prefix,
                f"is a value ({node!r}), not a section, so override '{text}' cannot set {key}",
                f"override the value itself, e.g. {prefix}=...",
            )
    try:
        OmegaConf.update(cfg, key, value, merge=True)
    except OmegaConfBaseException as e:
        raise ConfigError(
            label,
            key,
            f"override '{text}' cannot be applied ({_first_line(e)})",
            "check the key path; list items are addressed as key[0]",
        ) from None


# -- unknown keys ---------------------------------------------------------------------------------------


def _flat_keys(tree: Any, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            dotted = f"{prefix}.{key}" if prefix else str(key)
            keys.add(dotted)
            keys |= _flat_keys(value, dotted)
    return keys


def _section_model(model: type[BaseModel], field: str) -> type[BaseModel] | None:
    annotation = model.model_fields[field].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _check_keys(
    label: str,
    tree: Mapping[Any, Any],
    model: type[BaseModel],
    origins: Mapping[str, str],
    prefix: str = "",
) -> None:
    """Reject keys pydantic would reject, but with the closest valid key as the fix."""
    top = not prefix  # provenance fields live at the top level of every schema
    allowed = [f for f in model.model_fields if not (top and f in PROVENANCE_FIELDS)]
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in allowed:
            origin = origins.get(dotted, "")
            problem = f"unknown key{origin}"
            if top and key in PROVENANCE_FIELDS:
                raise ConfigError(
                    label,
                    dotted,
                    problem,
                    "remove it; name, preset, source and overrides are set by the loader",
                )
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.5)
            where = f"under {prefix}" if prefix else "at the top level"
            if close:
                fix = f"did you mean '{prefix + '.' if prefix else ''}{close[0]}'? rename it"
            else:
                fix = f"remove it; valid keys {where}: {', '.join(allowed)}"
            raise ConfigError(label, dotted, problem, fix)
        section = _section_model(model, key)
        if section is not None and isinstance(value, Mapping):
            _check_keys(label, value, section, origins, dotted)


# -- pydantic errors to one line ------------------------------------------------------------------------


def _first_line(error: Exception) -> str:
    message = getattr(error, "msg", None) or str(error)
    return message.strip().splitlines()[0] if message.strip() else type(error).__name__


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _loc_key(loc: Sequence[str | int], resolved: Mapping[str, Any]) -> str:
    key = _dotted(loc)
    names = resolved.get("modalities")
    if (
        len(loc) == 2
        and loc[0] in PER_MODALITY_FIELDS
        and isinstance(loc[1], int)
        and isinstance(names, list)
        and loc[1] < len(names)
    ):
        key += f" ({names[loc[1]]})"
    return key


def _from_validation_error(label: str, error: ValidationError, resolved: Mapping[str, Any],
                           schema: type[BaseModel] = ExperimentConfig) -> ConfigError:
    errors = error.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    if first["type"] == ERROR_TYPE:
        ctx = first["ctx"]
        key = _dotted((*loc, ctx["key"])) if loc else ctx["key"]
        return ConfigError(label, key, ctx["problem"] + more, ctx["fix"])
    key = _loc_key(loc, resolved) if loc else "(config)"
    kind = first["type"]
    message = first["msg"]
    wanted = message.removeprefix("Input should be ").split(",")[0]
    if kind == "missing":
        return ConfigError(label, key, "is missing" + more, f"add {key} to the file")
    section = None
    if len(loc) == 1 and loc[0] in schema.model_fields:
        section = _section_model(schema, str(loc[0]))
    if kind in ("model_type", "model_attributes_type", "dict_type") and section is not None:
        fields = ", ".join(section.model_fields)
        problem = f"{_short(first['input'])} is not a section"
        return ConfigError(label, key, problem + more, f"write {key} as a mapping of {fields}")
    if kind == "extra_forbidden":
        return ConfigError(label, key, "unknown key" + more, "remove it")
    if kind in ("literal_error", "enum"):
        expected = first.get("ctx", {}).get("expected", wanted)
        problem = f"{_short(first['input'])} is not allowed"
        return ConfigError(label, key, problem + more, f"use one of {expected}")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        problem = f"{_short(first['input'])} is out of range"
        return ConfigError(label, key, problem + more, f"use a value {wanted}")
    return ConfigError(
        label, key, f"{_short(first['input'])}: {message[:1].lower() + message[1:]}" + more, f"write {wanted}"
    )


# -- the entry points -----------------------------------------------------------------------------------


def load_config(
    name_or_path: str | Path, preset: str | None = None, overrides: Sequence[str] = ()
) -> ExperimentConfig:
    """Load a 4M config by stem ("m4", looked up in `config_dir()`) or by path, with a preset and overrides."""
    cfg = load_any_config(name_or_path, preset, overrides)
    if not isinstance(cfg, ExperimentConfig):
        raise ConfigError(Path(cfg.source).name, "model_kind", f"'{cfg.model_kind}' makes this a text-to-motion "
                          "config, not a 4M one", f"train it with `motionlab train motion --config {cfg.name}`")
    return cfg


def load_motion_config(
    name_or_path: str | Path, preset: str | None = None, overrides: Sequence[str] = ()
) -> MotionConfig:
    """Load a text-to-motion config ("motion", "physics" or a path), with a preset and overrides."""
    cfg = load_any_config(name_or_path, preset, overrides)
    if not isinstance(cfg, MotionConfig):
        raise ConfigError(Path(cfg.source).name, MOTION_DISCRIMINATOR, "is missing, so this is a 4M config, "
                          "not a text-to-motion one", "use --config motion or physics (or `motionlab train "
                          f"multimodal --config {cfg.name}`)")
    return cfg


def load_any_config(
    name_or_path: str | Path, preset: str | None = None, overrides: Sequence[str] = ()
) -> ExperimentConfig | MotionConfig:
    """Either schema, chosen by the file: a top-level `model_kind` makes it a text-to-motion config."""
    path = _locate(name_or_path)
    label = path.name
    raw = _read_yaml(path, label)
    schema: type[ExperimentConfig] | type[MotionConfig] = (
        MotionConfig if MOTION_DISCRIMINATOR in raw else ExperimentConfig
    )

    presets = raw.pop(PRESETS_KEY, None) or {}
    if not isinstance(presets, dict) or not all(isinstance(v, dict) for v in presets.values()):
        raise ConfigError(
            label,
            PRESETS_KEY,
            "must map preset names to partial configs",
            "write presets as `presets: {tiny: {model: {dim: 128}}}`",
        )
    if preset is not None and preset not in presets:
        defined = ", ".join(map(str, presets)) or "none are defined"
        raise ConfigError(
            label,
            f"{PRESETS_KEY}.{preset}",
            f"preset '{preset}' is not defined",
            f"use one of: {defined} (or add it under {PRESETS_KEY}:)",
        )

    interpolation_fix = "write interpolations as ${section.key}, closed with }"
    try:
        cfg = OmegaConf.create(raw)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "(file)"
        raise ConfigError(label, key, _first_line(e), interpolation_fix) from None
    origins: dict[str, str] = {}
    if preset is not None:
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.create(presets[preset]))
        except OmegaConfBaseException as e:
            key = f"{PRESETS_KEY}.{preset}.{getattr(e, 'full_key', None) or ''}".rstrip(".")
            raise ConfigError(label, key, _first_line(e), interpolation_fix) from None
        origins |= {key: f" (from preset {preset})" for key in _flat_keys(presets[preset])}
    if not isinstance(cfg, DictConfig):
        raise ConfigError(label, "(file)", "is not a mapping", "write the config as `key: value` lines")

    for text in overrides:
        key, value = _parse_override(label, text)
        _apply_override(label, cfg, text, key, value)
        parts = [p for p in _key_parts(key) if isinstance(p, str)]
        origins |= {_dotted(parts[:n]): f" (from override '{text}')" for n in range(1, len(parts) + 1)}
        origins |= {f"{key}.{sub}": f" (from override '{text}')" for sub in _flat_keys(value)}

    tree = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(tree, dict)
    _check_keys(label, tree, schema, origins)

    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "(interpolation)"
        fix = (
            "point the interpolation at an existing key, e.g. ${global_vars.image_size}"
            if isinstance(e, InterpolationKeyError)
            else "correct the interpolation; ${mul:a,b} and ${div:a,b} take two integers"
        )
        raise ConfigError(label, key, _first_line(e), fix) from None
    assert isinstance(resolved, dict)

    provenance = {"name": path.stem, "preset": preset, "source": str(path), "overrides": list(overrides)}
    try:
        return schema.model_validate({**resolved, **provenance})
    except ValidationError as e:
        raise _from_validation_error(label, e, resolved, schema) from None


def show_config(cfg: ExperimentConfig | MotionConfig) -> str:
    """The resolved YAML, headed by where it came from: what `motionlab config show` prints and runs log."""
    preset = f"preset {cfg.preset}" if cfg.preset else "no preset"
    header = [f"# {Path(cfg.source).name}, {preset}, resolved"]
    if cfg.overrides:
        header.append(f"# overrides: {' '.join(cfg.overrides)}")
    header.append(f"# source: {cfg.source}")
    header.append(f"# data fingerprint: {cfg.fingerprint('data')}")
    return "\n".join(header) + "\n" + cfg.to_yaml()
