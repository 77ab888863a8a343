"""``hmrkit train``: Lightning's CLI over every method and the data module.

    hmrkit train --config configs/hmr-r18-128.yaml [--trainer.max_steps 100 ...] [--resume last]

The model is any method (a class path: :mod:`hmrkit.models.registry`; its parts as nested class
paths, :mod:`hmrkit.models.parts`) or the backbone pretext
(:class:`hmrkit.models.pretext.KeypointPretext`). The configuration is the model's and the
data module's typed constructor arguments (YAML under ``configs/``; ``--print_config`` shows
every key with its default); Lightning saves it (``config.yaml``) next to the TensorBoard
logs and checkpoints of every run. A key that does not exist is an error naming it. The sizes
model and data share are set once, in the model: the data module's crop size, RoI count and
keys are linked from the model's ``crop_size``, ``num_rois`` and ``input_keys()``.
Checkpoints are written atomically (:class:`~hmrkit.models.checkpoints.AtomicCheckpointIO`);
``--resume last`` (or a path) continues a run with its optimizer state and step count. The
same config runs on CPU, one GPU or many (``--trainer.accelerator gpu --trainer.devices 4
--trainer.strategy ddp --trainer.precision bf16-mixed``): only trainer settings change."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.cli import LightningCLI

from hmrkit.data.module import HMRDataModule
from hmrkit.models.checkpoints import AtomicCheckpointIO


def _input_keys(model) -> tuple[str, ...]:
    return tuple(model.input_keys())


class HMRKitCLI(LightningCLI):
    """LightningCLI with atomic checkpoints and a ``--resume`` option."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--resume", default=None,
            help="continue from a checkpoint: a path, or 'last' (the run's last.ckpt)",
        )
        # shared sizes, linked once: the model's method contract sets what the data cuts
        parser.link_arguments("model.crop_size", "data.crop_size", apply_on="instantiate")
        parser.link_arguments("model.num_rois", "data.rois", apply_on="instantiate")
        parser.link_arguments("model", "data.keys", compute_fn=_input_keys,
                              apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        """``--resume last``: the newest ``last.ckpt`` of this config's TensorBoard runs; the
        resumed run logs into the same version folder."""
        resume = self.config.get("resume")
        if resume is None:
            return
        logger = self.config.trainer.get("logger")
        args = logger.get("init_args") if hasattr(logger, "get") else None
        if resume == "last":
            if args is None or args.get("save_dir") is None:
                raise SystemExit("hmrkit train: --resume last needs a TensorBoard logger in the "
                                 "config (trainer.logger); pass a checkpoint path instead")
            runs = Path(args.save_dir) / (args.get("name") or "lightning_logs")
            found = sorted(runs.glob("version_*/checkpoints/last.ckpt"),
                           key=lambda p: p.stat().st_mtime)
            if not found:
                raise SystemExit(f"hmrkit train: --resume last: no last.ckpt under {runs}")
            resume = str(found[-1])
        path = Path(resume)
        if not path.is_file():
            raise SystemExit(f"hmrkit train: --resume: checkpoint {path} does not exist")
        self.config.resume = str(path)
        version = path.parent.parent.name
        in_run = path.parent.name == "checkpoints" and version.startswith("version_")
        if args is not None and in_run:
            args.version = version  # keep logging (and checkpointing) in the resumed run

    def instantiate_trainer(self, **kwargs):
        plugins = list(kwargs.pop("plugins", None) or [])
        if not any(isinstance(p, AtomicCheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        return super().instantiate_trainer(plugins=plugins, **kwargs)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (a config and overrides), build method, data and trainer, and fit."""
    torch.set_float32_matmul_precision("high")  # TF32 matrix units on CUDA; no effect on CPU
    with warnings.catch_warnings():  # `hmrkit train ...` passes argv on purpose
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = HMRKitCLI(
            L.LightningModule, HMRDataModule, subclass_mode_model=True, args=argv, run=False,
            save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False,
            parser_kwargs={"prog": "hmrkit train", "description": __doc__.splitlines()[0]},
        )
    trainer = cli.trainer
    trainer.fit(cli.model, cli.datamodule, ckpt_path=cli.config.get("resume"))
    if not trainer.interrupted:  # the final state, whatever the checkpoint interval
        for callback in trainer.checkpoint_callbacks:
            if getattr(callback, "save_last", False) and callback.dirpath:
                trainer.save_checkpoint(Path(callback.dirpath) / "last.ckpt")
    return 0
