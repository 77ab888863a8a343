"""Image backbones through ``timm``, randomly initialised or loaded from a local checkpoint.

No weights are ever fetched from a hub: ``pretrained=False`` always; pass ``checkpoint=`` a
local file (a timm/torchvision state dict) to start from trained weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

BACKBONES = {
    "resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50",
    "hrnet_w32": "hrnet_w32", "hrnet_w48": "hrnet_w48",
    "vit_tiny": "vit_tiny_patch16_224", "vit_small": "vit_small_patch16_224",
    "vit_base": "vit_base_patch16_224",
}
"""hmrkit backbone names -> timm model names."""


def build_backbone(
    name: str, image_size: int = 224, checkpoint: str | Path | None = None
) -> tuple[nn.Module, int]:
    """A feature extractor returning (B, C) pooled features, and C.

    ``name`` is one of :data:`BACKBONES`; ``image_size`` matters for ViTs (position grid).
    """
    import timm

    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}'; choose one of {sorted(BACKBONES)}")
    kwargs = {"img_size": image_size} if name.startswith("vit") else {}
    model = timm.create_model(BACKBONES[name], pretrained=False, num_classes=0, **kwargs)
    if checkpoint is not None:
        load_backbone_weights(model, checkpoint)
    return model, int(model.num_features)


def load_backbone_weights(model: nn.Module, checkpoint: str | Path) -> None:
    """Load a local state dict (also nested under ``state_dict``/``model``), ignoring the
    classifier; from an hmrkit checkpoint (a method or
    :class:`~hmrkit.models.pretext.KeypointPretext` run) only the ``backbone.*`` weights are
    taken. Errors name the file and the mismatching keys."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"backbone checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - report any unreadable file the same way
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({err})") from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):  # an hmrkit run: keep its backbone only
        state = {k.removeprefix("backbone."): v for k, v in state.items()
                 if k.startswith("backbone.")}
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "head.", "classifier."))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(f"{path}: missing backbone weights {missing[:5]} ({len(missing)} in all)")
    if unexpected:
        raise ValueError(f"{path}: unexpected keys {unexpected[:5]} ({len(unexpected)} in all)")


def register_imagenet_normalisation(module: nn.Module) -> None:
    """Buffers ``pixel_mean`` / ``pixel_std`` (ImageNet statistics, (1, 3, 1, 1)): samples hold
    RGB in [0, 1]; timm backbones expect ``(image - pixel_mean) / pixel_std``."""
    module.register_buffer("pixel_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
    module.register_buffer("pixel_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
