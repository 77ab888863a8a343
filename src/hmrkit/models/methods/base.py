"""The method contract: what every method declares, reads and returns.

A method is a LightningModule that

- declares what the data must hold: :attr:`Method.crop_size` (side of the person crops it
  reads, None when it reads no image), :attr:`Method.crop_style` (how they are cut: upright
  boxes, or BlazePose's rotated squares), :attr:`Method.num_rois` (crops per person,
  Multi-RoI), :meth:`Method.input_keys` (the Sample keys :meth:`Method.estimate` reads;
  ``hmrkit predict`` builds exactly these, and ``hmrkit train`` / ``evaluate`` read them) and
  :meth:`Method.label_keys` (extra labels its losses read, e.g. dense maps; training only);
- turns a batch of Samples (:mod:`hmrkit.data.sample`) into a :class:`BodyEstimate`
  (:meth:`Method.estimate`) in the camera frame of the sample (a method reading rotated crops
  un-rolls its estimate, :meth:`BodyEstimate.unrolled`), whose fields are optional:
  rotations and shape, vertices, a predicted camera, world-frame outputs, extra named outputs;
- scores an estimate against the labels for training (:meth:`Method.compute_losses`, usually
  its loss set, :mod:`hmrkit.losses.sets`), and may add its own metrics
  (:meth:`Method.extra_metrics`) to the shared ones (:func:`hmrkit.metrics.scoring.score`).

The base provides the body model (its name is the ``body_model`` argument; the number of shape
coefficients comes from it), the poser of the labels (:class:`hmrkit.body.labels.LabelBodies`,
which honours each sample's ``meta/body_model``), :meth:`Method.infer` (the estimate, posed,
then an optional :mod:`refiner <hmrkit.models.refiners>`), the training and validation steps,
and the optimiser. Methods are found by name or class path in :mod:`hmrkit.models.registry`.
Configuration = constructor arguments (typed, documented): Lightning's CLI builds the YAML
configs under ``configs/`` from them and saves them with every run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import lightning as L
import torch
from torch import Tensor

from hmrkit.body import BodyModel, load_body_model
from hmrkit.body.estimate import BodyEstimate
from hmrkit.body.labels import LabelBodies
from hmrkit.geometry.cameras import Camera
from hmrkit.losses.sets import LossContext
from hmrkit.metrics.scoring import score
from hmrkit.models.optim import adam_with_schedule, check_schedule
from hmrkit.models.parts import class_path, plain

__all__ = ["BodyEstimate", "Method", "Optim"]

log = logging.getLogger(__name__)

@dataclass
class Optim:
    """Adam and its learning-rate schedule (:func:`hmrkit.models.optim.adam_with_schedule`)."""

    lr: float = 1e-4
    """Learning rate (SPIN: 5e-5, CLIFF: 1e-4 with batch 64 / 256)."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    schedule: str = "constant"
    """``constant`` (SPIN, CLIFF) or ``cosine`` decay to 0 at the trainer's ``max_steps``."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up steps."""

    def __post_init__(self):
        check_schedule(self.schedule)
        self.warmup_steps = int(self.warmup_steps)


def batch_size(batch: dict[str, Tensor]) -> int:
    """Persons in a batch (it may hold cached backbone outputs instead of ``image``)."""
    return int(next(iter(batch.values())).shape[0])


class Method(L.LightningModule):
    """The base of every method (see the module doc for the contract)."""

    crop_size: int | None = None
    """Side of the square person crops the method reads (None: it reads no image)."""
    num_rois: int = 1
    """Crops per person (Multi-RoI's RoIs; 1 for single-crop methods)."""
    crop_style: str = "box"
    """How the crops are cut (:data:`hmrkit.data.images.CROP_STYLES`): ``"box"`` (upright
    squares around the person's box) or ``"blazepose"`` (MediaPipe's rotated squares; the
    batch then holds ``box_rotation``); usually the backbone's."""

    def __init__(self, body_model: str = "anny24", num_betas: int | None = None,
                 optim: Optim | None = None):
        """
        Args:
            body_model: body model whose parameters the method predicts (``anny24``,
                ``anny24-full``, ``smpl`` with the user's file).
            num_betas: shape coefficients predicted (None: the body model's default).
            optim: optimiser settings.
        """
        super().__init__()
        self.body_model_name = body_model
        kwargs = {} if num_betas is None else {"num_betas": num_betas}
        self.body: BodyModel = load_body_model(body_model, **kwargs)
        self.labels = LabelBodies(self.body, body_model)
        self.optim = optim or Optim()

    @property
    def num_betas(self) -> int:
        """Shape coefficients predicted: the body model's."""
        return self.body.num_betas

    @property
    def loss_context(self) -> LossContext:
        """What the method's loss set needs from it (:mod:`hmrkit.losses.sets`)."""
        return LossContext(self.body, self.labels, self.crop_size, self.num_rois)

    # ---------------------------------------------------------------- the contract
    def input_keys(self) -> tuple[str, ...]:
        """The Sample keys :meth:`estimate` reads."""
        raise NotImplementedError

    def label_keys(self) -> tuple[str, ...]:
        """Sample keys only the losses read, beyond the sparse labels every method gets (e.g.
        dense maps: ``iuv``, ``depth``, ``mask``); training data holds them, ``hmrkit predict``
        does not build them."""
        return ()

    def estimate(self, batch: dict[str, Tensor]) -> BodyEstimate:
        """The estimate of the batch's people (see :class:`BodyEstimate`)."""
        raise NotImplementedError

    def compute_losses(self, est: BodyEstimate, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Weighted loss terms (their sum is minimised)."""
        raise TypeError(f"{type(self).__name__} has nothing to train")

    def extra_metrics(self, est: BodyEstimate, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per-person metrics of this method beyond the shared ones (none by default)."""
        return {}

    # ---------------------------------------------------------------- provided
    def forward(self, batch: dict[str, Tensor]) -> BodyEstimate:
        return self.estimate(batch)

    def infer(self, batch: dict[str, Tensor], refiner=None) -> BodyEstimate:
        """The estimate, posed by the body model, then refined by ``refiner`` (a
        :class:`hmrkit.models.refiners.Refiner`) when given."""
        est = self(batch).posed(self.body)
        if refiner is not None:
            camera = est.camera_or(Camera.from_sample(batch))
            est = refiner(batch, est, camera, self.body)
        return est

    @torch.no_grad()
    def evaluate_batch(self, batch: dict[str, Tensor], protocol: str = "lsp14",
                       est: BodyEstimate | None = None) -> dict[str, Tensor]:
        """Per-person metrics (mm) of ``est`` (default: :meth:`infer` of the batch): the shared
        ones the estimate supports (:func:`hmrkit.metrics.scoring.score`) and the method's
        :meth:`extra_metrics`."""
        est = self.infer(batch) if est is None else est.posed(self.body)
        return {**score(est, batch, self.labels, protocol), **self.extra_metrics(est, batch)}

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        est = self(batch)
        losses = self.compute_losses(est, batch)
        total = sum(losses.values())
        bs = batch_size(batch)
        if not torch.isfinite(total):  # skip the step (hmrkit.guard.NonFiniteGuard counts)
            bad = sorted(k for k, v in losses.items() if not torch.isfinite(v))
            log.warning("step %d: non-finite loss terms %s; step skipped", self.global_step, bad)
            return None
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=bs)
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=bs)
        return total

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        metrics = self.evaluate_batch(batch)
        bs = batch_size(batch)
        for k, v in metrics.items():
            self.log(f"val/{k}", v.nanmean(), prog_bar=k == "pa_mpjpe", batch_size=bs,
                     sync_dist=True)

    def configure_optimizers(self):
        o = self.optim
        return adam_with_schedule(self, o.lr, o.weight_decay, o.schedule, o.warmup_steps)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Record the method class and its arguments as plain data (parts as class paths), so
        :func:`hmrkit.models.checkpoints.load_method` rebuilds it from the checkpoint alone."""
        checkpoint["hmrkit"] = {"method": class_path(type(self))}
        checkpoint["hyper_parameters"] = plain(dict(self.hparams))
