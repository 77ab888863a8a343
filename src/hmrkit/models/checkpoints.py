"""Checkpoints: atomic writes during training, loading a method from a file, small exports.

A training checkpoint (Lightning) records the method's class path and its constructor
arguments as plain data (``hyper_parameters``: parts as nested class paths,
:mod:`hmrkit.models.parts`), so :func:`load_method` rebuilds the method from the file alone
(the class found through :mod:`hmrkit.models.registry`). An *export* (:func:`export_method`)
keeps only what inference needs: class, arguments and the weights (optionally in float16),
e.g. the demo's shipped model. Checkpoints of hmrkit 0.1 (flat arguments) are upgraded on
loading (:mod:`hmrkit.models.compat`). An export cannot be resumed.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from hmrkit.io import atomic_torch_save
from hmrkit.models.compat import is_flat, upgrade
from hmrkit.models.parts import build, plain

EXPORT_FORMAT = "hmrkit-method"
TRAINING_KEYS = ("state_dict", "optimizer_states", "loops")
"""What a Lightning training checkpoint holds and an export does not."""


class CheckpointError(ValueError):
    """A checkpoint file that does not exist or is not an hmrkit method."""


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written (a full disk, mostly); the message names it."""


def describe_write_error(path, err: BaseException) -> str:
    """One line for a failed checkpoint write. PyTorch reports a full disk as a RuntimeError
    ``unexpected pos N vs M`` (a short write in its zip writer), Python as ``ENOSPC``."""
    full = (isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)) or (
        isinstance(err, RuntimeError) and "unexpected pos" in str(err))
    if full:
        return f"disk full while writing {path}"
    reason = (getattr(err, "strerror", None) or str(err)).strip().splitlines()[-1]
    return f"could not write {path}: {reason}"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that writes to a temporary file and renames it into place, so an
    interrupted save never leaves a truncated ``.ckpt`` where resume would look. A failed
    write raises :class:`CheckpointWriteError` naming the file (the temporary is removed);
    an unreadable file or one that is not a training checkpoint raises
    :class:`CheckpointError`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        try:
            atomic_torch_save(path, checkpoint)
        except (OSError, RuntimeError) as err:
            raise CheckpointWriteError(describe_write_error(path, err)) from err

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return read_training_checkpoint(path)


def _clear_checkpoints(value: Any) -> Any:
    """The arguments with every part's ``checkpoint`` cleared: the method's checkpoint holds
    the trained weights, and the file that initialised a part need not exist where it is
    loaded."""
    if isinstance(value, dict):
        out = {k: _clear_checkpoints(v) for k, v in value.items()}
        if "class_path" in out and "checkpoint" in (out.get("init_args") or {}):
            out["init_args"] = {**out["init_args"], "checkpoint": None}
        return out
    if isinstance(value, list):
        return [_clear_checkpoints(v) for v in value]
    return value


def _init_arguments(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The method's constructor arguments as plain data (Lightning's CLI adds private ``_*``
    entries); ``backbone_checkpoint`` (hmrkit 0.1) and parts' ``checkpoint`` are cleared."""
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    arguments = plain({k: v for k, v in hparams.items() if not k.startswith("_")})
    if "backbone_checkpoint" in arguments:
        arguments["backbone_checkpoint"] = None
    return _clear_checkpoints(arguments)


def _method_class(path: str, checkpoint: dict[str, Any]) -> type:
    from hmrkit.models.registry import RegistryError, method_class

    name = (checkpoint.get("hmrkit") or {}).get("method")
    if not name:
        raise CheckpointError(f"{path}: not an hmrkit method checkpoint (no 'hmrkit' entry)")
    try:
        return method_class(name)
    except RegistryError as err:
        raise CheckpointError(f"{path}: {err}") from None


def read_checkpoint(path) -> dict[str, Any]:
    """The checkpoint dictionary of ``path`` (CPU tensors); clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({err})") from err


def read_training_checkpoint(path, mmap: bool = False) -> dict[str, Any]:
    """The Lightning training checkpoint ``path`` (one that ``--resume`` can continue):
    :class:`CheckpointError` for a missing, truncated or unreadable file, an export, or a file
    without the training state. ``mmap``: map the tensors instead of reading them (a quick
    check of a whole file: a truncated zip has no central directory)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0]
        raise CheckpointError(f"{path}: not a complete checkpoint (truncated or corrupt: "
                              f"{reason})") from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: not a training checkpoint")
    if checkpoint.get("format") == EXPORT_FORMAT:
        raise CheckpointError(f"{path}: an exported model (hmrkit export keeps the weights only, "
                              "no optimizer or step count); resume from a training .ckpt")
    missing = [k for k in TRAINING_KEYS if k not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint (no {', '.join(missing)})")
    return checkpoint


def nonfinite_weights(state_dict: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``state_dict`` holding NaN or infinity."""
    return [k for k, v in state_dict.items()
            if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]


def load_method(path, device: str | torch.device = "cpu"):
    """The method stored in ``path`` (a training checkpoint or an export), in eval mode."""
    checkpoint = read_checkpoint(path)
    cls = _method_class(str(path), checkpoint)
    arguments = _init_arguments(checkpoint)
    state = checkpoint["state_dict"]
    name = f"{cls.__module__}.{cls.__qualname__}"
    if is_flat(name, arguments):
        arguments, state = upgrade(name, arguments, state)
    try:
        model = build(cls, arguments)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: arguments do not fit {cls.__name__} ({err})") from err
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit {cls.__name__}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    bad = nonfinite_weights(state)
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} weight tensor(s) hold NaN or infinity "
                              f"(first: {bad[0]}); the training diverged before this was saved")
    return model.to(device).eval()


def export_method(checkpoint_path, out, half: bool = True) -> dict[str, Any]:
    """Write the inference part of a training checkpoint to ``out`` (atomic); returns a summary.

    Keeps the method class, its arguments and the weights (float16 if ``half``); drops the
    optimizer state and callbacks.
    """
    checkpoint = read_checkpoint(checkpoint_path)
    _method_class(str(checkpoint_path), checkpoint)
    state = {k: v.half() if half and v.is_floating_point() else v
             for k, v in checkpoint["state_dict"].items()}
    export = {
        "format": EXPORT_FORMAT,
        "hmrkit": checkpoint["hmrkit"],
        "hyper_parameters": _init_arguments(checkpoint),
        "state_dict": state,
        "global_step": checkpoint.get("global_step"),
        "epoch": checkpoint.get("epoch"),
    }
    atomic_torch_save(out, export)
    return {"out": str(out), "bytes": Path(out).stat().st_size,
            "parameters": sum(v.numel() for v in state.values())}
