"""The one registry of methods and refiners: names and class paths -> classes.

``hmrkit train`` (YAML ``class_path``: a class path, or the class name of a method the registry
imports, :func:`import_methods`), ``hmrkit evaluate --method``, ``hmrkit predict``,
``hmrkit demo`` and checkpoint loading all find methods here. A method is found by

- a name of :data:`METHODS` (the built-in methods);
- a name another installed package registers under the entry-point group ``hmrkit.methods``
  (``[project.entry-points."hmrkit.methods"] my-method = "my_package.module:MyMethod"``);
- its class path (``package.module.Class``), which is what configs and checkpoints store: a
  method in ONE new file is found without editing anything here.

Refiners (:mod:`hmrkit.models.refiners`) are found the same way (:data:`REFINERS`, entry-point
group ``hmrkit.refiners``, class paths).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

__all__ = ["METHODS", "REFINERS", "RegistryError", "import_methods", "method_class",
           "refiner_class", "resolve"]

METHODS: dict[str, str] = {
    "hmr": "hmrkit.models.methods.hmr.HMR",
    "cliff": "hmrkit.models.methods.cliff.CLIFF",
    "multiroi": "hmrkit.models.methods.multiroi.MultiRoI",
    "mean-pose": "hmrkit.models.methods.mean_pose.MeanPose",
    "whmr": "hmrkit.models.methods.whmr.WHMR",
}
"""Built-in method names -> class paths."""

REFINERS: dict[str, str] = {
    "identity": "hmrkit.models.refiners.IdentityRefiner",
}
"""Built-in refiner names -> class paths."""


class RegistryError(ValueError):
    """A name or class path that does not lead to a method (or refiner)."""


def _import(path: str, what: str) -> type:
    module, sep, name = path.replace(":", ".").rpartition(".")
    if not sep:
        raise RegistryError(f"unknown {what} '{path}'")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise RegistryError(f"{what} class {path} not found ({err})") from None


def resolve(name: str, builtin: dict[str, str], group: str, base: type, what: str) -> type:
    """The class of ``name`` (a built-in name, an entry point of ``group`` or a class path),
    checked to be a subclass of ``base``."""
    if name in builtin:
        cls = _import(builtin[name], what)
    else:
        found = [ep for ep in entry_points(group=group) if ep.name == name]
        if found:
            cls = found[0].load()
        elif "." in name or ":" in name:
            cls = _import(name, what)
        else:
            extra = sorted(ep.name for ep in entry_points(group=group))
            raise RegistryError(f"unknown {what} '{name}'; choose one of "
                                f"{sorted(builtin) + extra} or give a class path")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise RegistryError(f"{name} is not a {base.__module__}.{base.__qualname__}")
    return cls


def method_class(name: str) -> type:
    """The method class of ``name`` (see the module doc)."""
    from hmrkit.models.methods.base import Method

    return resolve(name, METHODS, "hmrkit.methods", Method, "method")


def refiner_class(name: str) -> type:
    """The refiner class of ``name`` (see the module doc)."""
    from hmrkit.models.refiners import Refiner

    return resolve(name, REFINERS, "hmrkit.refiners", Refiner, "refiner")


def import_methods() -> list[type]:
    """Import every built-in and entry-point method (so that a YAML config may name one by its
    class name, ``class_path: CLIFF``, besides its class path); returns their classes."""
    names = [*METHODS, *(ep.name for ep in entry_points(group="hmrkit.methods"))]
    return [method_class(name) for name in dict.fromkeys(names)]
