"""``hmrkit train``: Lightning's CLI over every method and the data module.

    hmrkit train --config configs/hmr-r18-128.yaml [--trainer.max_steps 100 ...] [--resume last]

The model is any method (a class path: :mod:`hmrkit.models.registry`; its parts as nested class
paths, :mod:`hmrkit.models.parts`) or the backbone pretext
(:class:`hmrkit.models.pretext.KeypointPretext`). The configuration is the model's and the
data module's typed constructor arguments (YAML under ``configs/``; ``--print_config`` shows
every key with its default); Lightning saves it (``config.yaml``) next to the TensorBoard
logs and checkpoints of every run. A key that does not exist is an error naming it. The sizes
model and data share are set once, in the model: the data module's crop size, RoI count and
keys are linked from the model's ``crop_size``, ``num_rois`` and ``input_keys()``, its crop
style from ``crop_style``, and a feature cache (``data.format: feature-cache``) is checked
against the backbone's ``cache_signature()``.
Checkpoints are written atomically (:class:`~hmrkit.models.checkpoints.AtomicCheckpointIO`).
The same config runs on CPU, one GPU or many (``--trainer.accelerator gpu --trainer.devices 4
--trainer.strategy ddp --trainer.precision bf16-mixed``): only trainer settings change.

``--resume last`` continues the latest run of the config (its highest ``version_N``) from its
newest complete checkpoint, or stops with one line saying why: never another run
(:func:`hmrkit.resume.find_resume_checkpoint`). Resumed training continues exactly: the
optimizer, step count, data order, augmentation epoch and random generators are restored
(:mod:`hmrkit.resume`, :mod:`hmrkit.data.module`). Every run is guarded against non-finite
steps and divergence (:class:`hmrkit.guard.NonFiniteGuard`). Errors in the config, the data or
a checkpoint, a full disk and a diverged run each end with one line on stderr: exit status 2
for a usage error (config, data, checkpoint), 1 when training failed (``HMRKIT_DEBUG=1``
shows the traceback instead)."""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path

import lightning as L
import torch
from jsonargparse import ArgumentError
from lightning.pytorch.cli import LightningCLI

from hmrkit.data.module import DataError, HMRDataModule
from hmrkit.guard import NonFiniteGuard, TrainingStopped
from hmrkit.models.checkpoints import AtomicCheckpointIO, CheckpointError, CheckpointWriteError
from hmrkit.models.registry import import_methods
from hmrkit.resume import (
    ResumeError,
    RunState,
    checked_checkpoint,
    find_resume_checkpoint,
    save_last,
)

PROG = "hmrkit train"


def _input_keys(model) -> tuple[str, ...]:
    """What the data must hold for the model: its input keys and the labels its losses read."""
    labels = model.label_keys() if hasattr(model, "label_keys") else ()
    return (*model.input_keys(), *labels)


def _crop_style(model) -> str:
    return getattr(model, "crop_style", "box")


def _cache_signature(model) -> dict | None:
    backbone = getattr(model, "backbone", None)
    return backbone.cache_signature() if hasattr(backbone, "cache_signature") else None


class HMRKitCLI(LightningCLI):
    """LightningCLI with a ``--resume`` option, checks across config keys, atomic checkpoints
    and hmrkit's callbacks (:class:`~hmrkit.guard.NonFiniteGuard`,
    :class:`~hmrkit.resume.RunState`) in every run."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--resume", default=None,
            help="continue a run: 'last' (the latest run of this config, from its newest "
            "complete checkpoint) or a checkpoint path",
        )
        # shared sizes, linked once: the model's method contract sets what the data cuts
        parser.link_arguments("model.crop_size", "data.crop_size", apply_on="instantiate")
        parser.link_arguments("model.num_rois", "data.rois", apply_on="instantiate")
        parser.link_arguments("model", "data.keys", compute_fn=_input_keys,
                              apply_on="instantiate")
        parser.link_arguments("model", "data.crop_style", compute_fn=_crop_style,
                              apply_on="instantiate")
        parser.link_arguments("model", "data.features", compute_fn=_cache_signature,
                              apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config
        seed = config.get("seed_everything")  # an int once LightningCLI seeded; False: off
        if config.data.get("seed") is None and isinstance(seed, int) and seed is not False:
            config.data.seed = seed  # the data order and augmentation follow it
        check_model_fits_data(config)
        self._resolve_resume()

    def _resolve_resume(self) -> None:
        """``--resume``: the checkpoint (checked before anything is built), and the run folder
        the resumed run keeps logging and checkpointing into."""
        resume = self.config.get("resume")
        if resume is None:
            return
        logger = self.config.trainer.get("logger")
        args = logger.get("init_args") if hasattr(logger, "get") else None
        if resume == "last":
            if args is None or args.get("save_dir") is None:
                raise ResumeError("--resume last needs a TensorBoard logger in the config "
                                  "(trainer.logger); pass a checkpoint path instead")
            runs = Path(args.save_dir) / (args.get("name") or "lightning_logs")
            path, notes = find_resume_checkpoint(runs)
            for note in notes:
                print(f"{PROG}: --resume last: {note}", file=sys.stderr)
        else:
            path = Path(resume)
        step = checked_checkpoint(path).get("global_step")
        print(f"{PROG}: resuming {path} (step {step})", file=sys.stderr)
        self.config.resume = str(path)
        version = path.parent.parent.name
        in_run = path.parent.name == "checkpoints" and version.startswith("version_")
        if args is not None and in_run:
            args.version = version  # keep logging (and checkpointing) in the resumed run

    def instantiate_trainer(self, **kwargs):
        plugins = list(kwargs.pop("plugins", None) or [])
        if not any(isinstance(p, AtomicCheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        configured = list(self._get(self.config_init, "trainer").get("callbacks") or [])
        for cls in (NonFiniteGuard, RunState):
            if not any(isinstance(c, cls) for c in configured):
                configured.append(cls())
        return super().instantiate_trainer(plugins=plugins, callbacks=configured, **kwargs)


def check_model_fits_data(config) -> None:
    """The data's crops are the method's: their size and count are linked from the model
    (``model.init_args.crop_size``, ``num_rois``; see the module doc), so the model's crop size
    is checked here, before anything is built."""
    model = config.get("model")
    init = model.get("init_args") if hasattr(model, "get") else None
    if init is None:
        return
    crop = init.get("crop_size")
    if crop is not None and (isinstance(crop, bool) or not isinstance(crop, int) or crop < 8):
        raise ValueError(f"model.init_args.crop_size must be an integer >= 8, got {crop!r}")


_BOILERPLATE = ("Does not validate against", "Subtypes:", "Errors:", "Given value",
                "Expected a <class 'NoneType'>", "tip: ")


def config_error_line(message: str) -> str:
    """One line from jsonargparse's multi-line error: the config key and what is wrong.

    E.g. ``Parser key "model": ... Problem with given class_path 'hmrkit...HMR': Option
    'backbon' is not accepted`` -> ``model: no such key 'backbon' (class hmrkit...HMR)``."""
    keys = re.findall(r'Parser key "([^"]+)"', message)
    cls = re.search(r"Problem with given class_path '([^']+)'", message)
    lines = [re.sub(r'^Parser key "[^"]+":\s*', "", line.strip().removeprefix("- ").strip())
             for line in message.splitlines()]
    details = [line for line in lines if line and not line.startswith(_BOILERPLATE)
               and "Problem with given class_path" not in line]
    detail = details[-1] if details else message.strip().splitlines()[0]
    key = ".".join(dict.fromkeys(keys[:1] + keys[-1:]))  # outer key, and the nested one
    option = re.fullmatch(r"Option '([^']+)' is not accepted", detail)
    if option:
        detail = f"no such key '{option.group(1)}'"
    group = re.fullmatch(r"Group '([^']+)' does not accept option '([^']+)'", detail)
    unknown = re.fullmatch(r"unrecognized arguments: --([^\s=]+).*", detail)
    if group:
        key, detail = f"{group.group(1)}.{group.group(2)}", "no such key"
    elif unknown:
        key, detail = unknown.group(1), "no such key"
    if cls:
        detail += f" (class {cls.group(1)})"
    return f"{key}: {detail}" if key else detail


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (a config and overrides), build method, data and trainer, and fit."""
    torch.set_float32_matmul_precision("high")  # TF32 matrix units on CUDA; no effect on CPU
    import_methods()  # the registry's methods, so a config may name one by its class name
    debug = bool(os.environ.get("HMRKIT_DEBUG"))
    try:
        with warnings.catch_warnings():  # `hmrkit train ...` passes argv on purpose
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            cli = HMRKitCLI(
                L.LightningModule, HMRDataModule, subclass_mode_model=True, args=argv,
                run=False, save_config_kwargs={"overwrite": True},
                auto_configure_optimizers=False,
                parser_kwargs={"prog": PROG, "description": __doc__.splitlines()[0],
                               "exit_on_error": False},
            )
    except (ArgumentError, ValueError, TypeError) as err:  # the config (or --resume) is wrong
        if debug:
            raise
        return _fail(str(err) if isinstance(err, (CheckpointError, ResumeError))
                     else config_error_line(str(err)), 2)
    trainer = cli.trainer
    try:
        cli.datamodule.setup("fit")  # data errors before the run folder is made
        trainer.fit(cli.model, cli.datamodule, ckpt_path=cli.config.get("resume"))
        state = next(c for c in trainer.callbacks if isinstance(c, RunState))
        if not trainer.interrupted and state.last_saved_step != trainer.global_step:
            save_last(trainer)  # the final state (max_epochs), whatever the checkpoint interval
    except (DataError, CheckpointError) as err:
        if debug:
            raise
        return _fail(str(err), 2)
    except (TrainingStopped, CheckpointWriteError) as err:
        if debug:
            raise
        return _fail(str(err), 1)
    return 0
