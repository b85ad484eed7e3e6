"""Configuration: core defaults <- domain config.yaml <- user file <- `--set key=value`, validated as a whole.

Every problem is reported at once with its key path and what was expected, before any data or model loads.
The result is a frozen `Config`, written beside every output with versions and input data hashes.
"""
from __future__ import annotations

import copy
import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

import jsonschema
import yaml

from core.errors import ConfigError, UserError
from core.io import versions

_HERE = Path(__file__).parent


def _freeze(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        return tuple(_freeze(v) for v in obj)
    return obj


def _thaw(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _thaw(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return [_thaw(v) for v in obj]
    return obj


@dataclass(frozen=True)
class Config:
    """A resolved, validated, read-only configuration of one domain."""

    domain: str
    values: Mapping[str, Any]
    sources: tuple[str, ...] = field(default=())
    requirements: tuple[str, ...] = field(default=())   # the domain's packages, stamped beside outputs
    given: Mapping[str, Any] = field(default_factory=dict)  # only what --config and --set said (no defaults)

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.values
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def to_dict(self) -> dict[str, Any]:
        return _thaw(self.values)

    def given_at(self, dotted: str) -> dict[str, Any]:
        """The settings under `dotted` that the user gave (--config, --set), without the defaults: what a
        command may lay over settings stored with a trained model."""
        node: Any = self.given
        for part in dotted.split("."):
            node = node.get(part, {}) if isinstance(node, Mapping) else {}
        return _thaw(node) if isinstance(node, Mapping) else {}

    def to_given(self) -> dict[str, Any]:
        return _thaw(self.given)

    def __reduce__(self):
        # read-only mappings do not pickle; worker processes get the config rebuilt from plain dicts
        return (_rebuild, (self.domain, self.to_dict(), self.sources, self.requirements, _thaw(self.given)))

    def resolved(self, data_hashes: Mapping[str, str] | None = None) -> dict[str, Any]:
        """What is written beside every output: the config, where it came from, versions, data hashes."""
        return {"domain": self.domain, "config": self.to_dict(), "sources": list(self.sources),
                "versions": versions(self.requirements), "data_hashes": dict(data_hashes or {})}


def leaves(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of a nested mapping's values that are not (non-empty) mappings."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def value_at(tree: Mapping[str, Any], dotted: str, missing: Any = None) -> Any:
    """The value at a dotted key of a nested mapping, or `missing`."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return missing
        node = node[part]
    return node


def within(key: str, settings: Iterable[str]) -> bool:
    """Whether dotted `key` is one of `settings` or inside one of them (a section)."""
    return any(key == s or key.startswith(s + ".") for s in settings)


def _rebuild(domain, values, sources, requirements, given) -> Config:
    return Config(domain, _freeze(values), tuple(sources), tuple(requirements), _freeze(given))


_MISSING = object()


def deep_merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: config file not found; pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc}); fix the syntax at the line shown") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config file must be a mapping of keys to values, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str] | None) -> dict:
    """Turn ['train.lr=1e-3', 'encoder.attention=linear'] into a nested dict (values parsed as YAML)."""
    out: dict = {}
    problems = []
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set {item!r}: expected key=value, e.g. --set train.lr=1e-3")
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        value = _as_number(value)
        node = out
        parts = key.strip().split(".")
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                problems.append(f"--set {item!r}: {'.'.join(parts[:depth + 1])} was already set to a value, "
                                "not a section; use one of the two")
                break
        else:
            node[parts[-1]] = value
    if problems:
        raise ConfigError(problems, source="--set")
    return out


_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _as_number(value: Any) -> Any:
    """YAML 1.1 reads `1e-3` (no dot) as a string; users mean a number."""
    if isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_as_number(v) for v in value]
    return value


def merged_schema(domain_schema: Mapping) -> dict:
    """Core's shared sections plus the domain's own; unknown top-level keys are errors."""
    common = json.loads((_HERE / "schema_common.json").read_text())
    schema = copy.deepcopy(dict(domain_schema))
    schema.setdefault("type", "object")
    schema["properties"] = {**common["properties"], **schema.get("properties", {})}
    schema.setdefault("additionalProperties", False)
    return schema


def _describe(err: jsonschema.ValidationError, schema_root: Mapping) -> str:
    path = ".".join(str(p) for p in err.absolute_path) or "<top level>"
    if err.validator == "additionalProperties":
        allowed = sorted((err.schema.get("properties") or {}).keys())
        extras = [k for k in err.instance if k not in allowed] if isinstance(err.instance, Mapping) else []
        msgs = []
        for extra in extras:
            full = f"{path}.{extra}" if path != "<top level>" else extra
            close = difflib.get_close_matches(extra, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}"
            msgs.append(f"{full}: unknown key{hint}")
        return "\n  - ".join(msgs) or f"{path}: {err.message}"
    expected = {k: err.schema[k] for k in ("type", "enum", "minimum", "maximum", "exclusiveMinimum",
                                           "minLength", "minItems", "pattern") if k in err.schema}
    exp = ", ".join(f"{k} {v}" for k, v in expected.items())
    hint = ""
    if err.validator == "type" and "array" in str(err.schema.get("type")) and not isinstance(err.instance, list):
        # items a user ran together with x, ; or spaces ("1088x1920") become a comma-separated list
        text = str(err.instance).strip() if isinstance(err.instance, str) else ""
        items = re.split(r"\s*(?:(?<=\d)\s*[x×]\s*(?=\d)|[;,\s])\s*", text) if text else []
        shown = ", ".join(i for i in items if i) if len(items) > 1 else err.instance
        hint = f"; a list is written in brackets: --set '{path}=[{shown}]'"
    return (f"{path}: {err.message}" + (f" (expected {exp})" if exp and "expected" not in err.message else "")
            + hint)


def validate(values: Mapping, schema: Mapping, extra_checks: list[str] | None = None) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(values), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [_describe(e, schema) for e in errors] + list(extra_checks or [])
    if problems:
        raise ConfigError(problems)


def _check_attention(values: Mapping) -> list[str]:
    from core.attention import available_attention  # the registry is the source of truth, not the schema
    name = (values.get("encoder") or {}).get("attention")
    known = available_attention()
    if name is None or name in known:
        return []
    return [f"encoder.attention: unknown backend {name!r}; choose one of {', '.join(known)}"]


def resolve(domain: str, domain_defaults: Path, domain_schema: Mapping, config_file: str | Path | None = None,
            overrides: list[str] | None = None, extra_check=None, requirements: tuple[str, ...] = (),
            base: Mapping[str, Any] | None = None, base_source: str = "",
            task_defaults: Callable[[str | None], tuple[str, ...]] | None = None) -> Config:
    """Build and validate the config for `domain`. `extra_check(dict) -> list[str]` adds domain rules
    that a JSON schema cannot express (cross-field constraints); its problems are reported with the rest.
    `base`: settings an earlier step resolved (the prepared data's), laid over the defaults and under what
    this command gives, so a later step need not repeat them. `task_defaults(task name) -> --set items`: the
    chosen task's own defaults, laid over the domain's (under `base` and what the command gives)."""
    values = deep_merge(load_yaml(_HERE / "defaults.yaml"), load_yaml(domain_defaults))
    sources, given = [str(domain_defaults)], {}
    if config_file:
        user = load_yaml(config_file)
        user.pop("domain", None)  # a config file may name its domain; the CLI's --domain decides
        given = deep_merge(given, user)
    if overrides:
        given = deep_merge(given, parse_overrides(overrides))
    chosen_task = value_at(deep_merge(deep_merge(values, base or {}), given), "task")
    own = task_defaults(chosen_task if isinstance(chosen_task, str) else None) if task_defaults else ()
    if own:
        values = deep_merge(values, parse_overrides(list(own)))
        sources.append(f"task {chosen_task} defaults: {', '.join(own)}")
    if base is not None:
        values = deep_merge(values, base)
        sources.append(base_source or "earlier step")
    if config_file:
        sources.append(str(config_file))
    sources.extend(f"--set {o}" for o in overrides or [])
    values = deep_merge(values, given)
    schema = merged_schema(domain_schema)
    validator = jsonschema.Draft202012Validator(schema)
    schema_ok = not any(True for _ in validator.iter_errors(values))
    extra = list(extra_check(values)) if (extra_check and schema_ok) else []
    extra += _check_attention(values)
    validate(values, schema, extra)
    return Config(domain=domain, values=_freeze(values), sources=tuple(sources), requirements=tuple(requirements),
                  given=_freeze(given))
