"""The `Domain` contract and its registry.

A domain is one folder `domains/<name>/` whose package exposes a `Domain` subclass with `name == <name>`:
it lists its tasks (see ``core.task``), its config defaults (`config.yaml`) and schema (`schema.json`), and
the packages it needs (`requirements`: `sciformer doctor` checks them, outputs stamp their versions).
Discovery, in this order (the first found wins a name):
  1. the subfolders of the `domains` package (this project's domains: nothing to register);
  2. folders listed in the SCIFORMER_DOMAIN_PATH environment variable (os.pathsep-separated), each holding
     domain packages (a lab's own domains, the tests' example domain);
  3. the `sciformer.domains` entry-point group (domains shipped in other installed packages).
Core imports a domain only by name, when a command needs it, so it never depends on one.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Mapping

from core.config import Config, resolve
from core.errors import UserError

if TYPE_CHECKING:
    from core.task import Task

ENTRY_POINT_GROUP = "sciformer.domains"
PATH_VARIABLE = "SCIFORMER_DOMAIN_PATH"


class Domain:
    """Base class of every domain: `name`, `description`, `tasks` (the first is the default), `requirements`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    tasks: ClassVar[tuple[type[Task], ...]] = ()
    # distributions the domain imports (checked by `sciformer doctor`, versions stamped into every output)
    requirements: ClassVar[tuple[str, ...]] = ()

    # -- tasks ---------------------------------------------------------------------------------------------
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def task(self, name: str | None = None) -> Task:
        """The task called `name` (default: the domain's first task)."""
        if not self.tasks:
            raise UserError(f"domain {self.name!r} declares no tasks")
        if name is None:
            return self.tasks[0](self)
        for cls in self.tasks:
            if cls.name == name:
                return cls(self)
        raise UserError(f"domain {self.name!r} has no task {name!r}; choose one of {', '.join(self.task_names())}")

    def task_of(self, cfg: Config) -> Task:
        return self.task(cfg.get("task"))

    # -- configuration -------------------------------------------------------------------------------------
    def folder(self) -> Path:
        """The folder of the module defining the domain class (its config.yaml and schema.json live there)."""
        return Path(inspect.getfile(type(self))).parent

    def default_config_path(self) -> Path:
        return self.folder() / "config.yaml"

    def schema(self) -> dict:
        return json.loads((self.folder() / "schema.json").read_text())

    def check_config(self, values: Mapping[str, Any]) -> list[str]:
        """Cross-field rules a JSON schema cannot express; return problems (key path + fix)."""
        return []

    def _check(self, values: Mapping[str, Any]) -> list[str]:
        task = values.get("task")
        if task is not None and task not in self.task_names():
            return [f"task: {task!r} is not a task of {self.name}; choose one of {', '.join(self.task_names())}"]
        return self.check_config(values)

    def config(self, config_file: str | Path | None = None, overrides: list[str] | None = None,
               prepared: Path | None = None) -> Config:
        """Defaults <- (the `prepared` folder's settings) <- --config <- --set. With `prepared`, train and
        evaluate read the data's own settings (its targets, columns, task), and a command that gives another
        value for one of the task's `data_settings` is refused: the prepared files would not match it."""
        from core.prepared import check_against_prepared, prepared_config
        base, source = prepared_config(prepared, self.name) if prepared is not None else (None, "")
        cfg = resolve(self.name, self.default_config_path(), self.schema(), config_file, overrides,
                      extra_check=self._check, requirements=self.requirements, base=base, base_source=source,
                      task_defaults=self._task_defaults)
        if base is not None:
            check_against_prepared(cfg, base, self.task_of(cfg), prepared)
        return cfg

    def _task_defaults(self, name: str | None) -> tuple[str, ...]:
        known = {t.name: t for t in self.tasks}
        task = known.get(name) if name is not None else (self.tasks[0] if self.tasks else None)
        return task.task_defaults if task is not None else ()   # an unknown task is reported by _check

    def self_check(self) -> str:
        """A one-line real call into the domain's field packages for `sciformer doctor` (raise if broken)."""
        return "imports"


# -- registry -------------------------------------------------------------------------------------------
_LOADED: dict[str, type[Domain]] = {}
_BROKEN: dict[str, str] = {}


def register_domain(cls: type[Domain]) -> type[Domain]:
    """Register a domain class by its `name` (also usable as a decorator, e.g. in a notebook)."""
    _LOADED[cls.name] = cls
    return cls


def _folder_sources() -> dict[str, Path]:
    """name -> package folder, for the `domains` package and SCIFORMER_DOMAIN_PATH folders."""
    found: dict[str, Path] = {}
    spec = importlib.util.find_spec("domains")
    roots = list(spec.submodule_search_locations or []) if spec else []
    roots += [p for p in os.environ.get(PATH_VARIABLE, "").split(os.pathsep) if p]
    for root in roots:
        for pkg in sorted(Path(root).iterdir()) if Path(root).is_dir() else []:
            if (pkg / "__init__.py").exists() and not pkg.name.startswith(("_", ".")):
                found.setdefault(pkg.name, pkg)
    return found


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def registered_names() -> list[str]:
    """Every domain name, without importing any domain (e.g. for the CLI's --domain choices)."""
    return sorted({*_LOADED, *_folder_sources(), *_entry_points()})


def _import_folder(name: str, folder: Path):
    project = importlib.util.find_spec("domains")
    if project and str(folder.parent) in [str(Path(p)) for p in project.submodule_search_locations or []]:
        return importlib.import_module(f"domains.{name}")
    module_name = f"sciformer_domain_{name}"   # a domain from SCIFORMER_DOMAIN_PATH, imported by location
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def _domain_class(module, name: str) -> type[Domain]:
    for value in vars(module).values():
        if inspect.isclass(value) and issubclass(value, Domain) and value is not Domain and \
                getattr(value, "name", None) == name:
            return value
    raise ImportError(f"no Domain subclass with name = {name!r} in {module.__name__}")


def _load(name: str) -> None:
    if name in _LOADED or name in _BROKEN:
        return
    try:
        folders = _folder_sources()
        if name in folders:
            _LOADED[name] = _domain_class(_import_folder(name, folders[name]), name)
        elif name in (eps := _entry_points()):
            _LOADED[name] = eps[name].load()
    except Exception as exc:  # a broken domain must not take the others down
        _BROKEN[name] = f"{type(exc).__name__}: {exc}"


def domain_names() -> list[str]:
    """Names of the loadable domains (imports every one: use `registered_names` where names suffice)."""
    for name in registered_names():
        _load(name)
    return sorted(_LOADED)


def broken_domains() -> dict[str, str]:
    domain_names()
    return dict(_BROKEN)


def get_domain(name: str) -> Domain:
    _load(name)
    if name not in _LOADED:
        why = f" (it failed to load: {_BROKEN[name]})" if name in _BROKEN else ""
        known = ", ".join(registered_names()) or "none"
        raise UserError(f"unknown domain {name!r}{why}; known domains: {known} (run `sciformer list`)")
    return _LOADED[name]()


def iter_domains() -> Iterator[Domain]:
    for name in domain_names():
        yield _LOADED[name]()


def __getattr__(name: str):
    """The contract's types (`from core.domain import Task, TrainingTask, Prediction, LoadedModel`), imported
    on first use: they need torch, and the CLI's argument parsing must stay fast."""
    if name in ("Task", "TrainingTask", "Prediction"):
        import core.task
        return getattr(core.task, name)
    if name == "LoadedModel":
        from core.runs import LoadedModel
        return LoadedModel
    raise AttributeError(f"module 'core.domain' has no attribute {name!r}")
