"""Methods are built from parts: factories given as nested class paths.

A method's constructor takes its backbone, head(s), box information and loss set as
*factories*: a class, or in a YAML config ``{class_path: ..., init_args: {...}}`` holding the
part's own settings (Lightning's / jsonargparse's way). The method calls each factory with
the sizes it shares with the other parts (crop side, feature width, number of joints and shape
coefficients), by keyword, so a size is set in one place and linked everywhere else::

    model:
      class_path: hmrkit.models.methods.CLIFF
      init_args:
        crop_size: 96
        backbone: {class_path: hmrkit.models.backbones.TimmBackbone, init_args: {name: resnet18}}
        head: {class_path: hmrkit.models.heads.IterativeRegressor, init_args: {hidden: 512}}

:func:`plain` turns constructor arguments (classes, ``functools.partial`` of classes,
dataclasses) back into that plain form, which is what checkpoints store, and :func:`build`
rebuilds a method (or any class) from it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["Factory", "build", "class_path", "plain"]

Factory = Callable[..., T]
"""A part given as a class or a partial of one (typed ``Callable[[shared sizes], Part]``)."""


def class_path(cls: type) -> str:
    """``package.module.Class`` of a class."""
    return f"{cls.__module__}.{cls.__qualname__}"


def plain(value: Any) -> Any:
    """Constructor arguments as plain data (what configs and checkpoints hold).

    A class -> ``{"class_path": ...}`` (with ``init_args`` ``{}``); a ``functools.partial`` of a
    class (also the ones jsonargparse makes) -> its class path and keyword arguments; a
    dataclass -> a dict; tuples -> lists; dicts and lists recursively; other values as they are.
    """
    if isinstance(value, type):
        return {"class_path": class_path(value), "init_args": {}}
    if isinstance(value, functools.partial):
        classes = [v for v in (value.func, *value.args) if isinstance(v, type)]
        if not classes:
            raise TypeError(f"cannot describe {value!r} as a class path: give parts as classes")
        return {"class_path": class_path(classes[-1]), "init_args": plain(dict(value.keywords))}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def build(cls: type[T], init_args: dict[str, Any]) -> T:
    """``cls`` built from plain constructor arguments (nested class paths become factories or
    instances as the constructor's type hints say; dataclass arguments are filled from
    dicts). Errors name the argument that does not fit."""
    import os

    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "obj", fail_untyped=False)
    config = parser.parse_object({"obj": plain(init_args)})
    return parser.instantiate(config).obj
