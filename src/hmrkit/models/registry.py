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
group ``hmrkit.refiners``, class paths) and built with options (:func:`make_refiner`; the
commands' ``--refiner-arg key=value``).
"""

from __future__ import annotations

import importlib
import json
from importlib.metadata import entry_points

__all__ = ["METHODS", "REFINERS", "RegistryError", "import_methods", "make_refiner",
           "method_class", "parse_options", "refiner_class", "resolve"]

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
    "keypoints": "hmrkit.models.fit_refiners.KeypointRefiner",
    "keypoints-labels": "hmrkit.models.fit_refiners.LabelKeypointRefiner",
    "dense": "hmrkit.models.dense_refiner.DenseRefiner",
    "dense-labels": "hmrkit.models.dense_refiner.LabelDenseRefiner",
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


def parse_options(items: list[str] | None, what: str = "--refiner-arg") -> dict:
    """``["key=value", ...]`` -> keyword arguments; values are read as JSON when they parse
    (numbers, true/false, null, lists), else kept as text."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise RegistryError(f"{what} must look like name=value, got '{item}'")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def make_refiner(name: str, options: list[str] | None = None):
    """A refiner by ``name`` built with ``options`` (``key=value`` texts, see
    :func:`parse_options`); a bad name or option is a one-line :class:`RegistryError` (or the
    refiner's own :class:`~hmrkit.models.refiners.RefinerError`)."""
    cls = refiner_class(name)
    kwargs = parse_options(options)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise RegistryError(f"refiner '{name}' does not take {sorted(kwargs)} ({err})") from None


def import_methods() -> list[type]:
    """Import every built-in and entry-point method (so that a YAML config may name one by its
    class name, ``class_path: CLIFF``, besides its class path); returns their classes."""
    names = [*METHODS, *(ep.name for ep in entry_points(group="hmrkit.methods"))]
    return [method_class(name) for name in dict.fromkeys(names)]
