"""Image backbones: a person crop in, a feature vector (or its spatial map) out.

:class:`Backbone` is what every method's ``backbone`` part is: ``(N, 3, S, S)`` RGB in
``[0, 1]`` -> ``(N, C)`` features, ``C = out_features``; it owns its input normalisation.
Methods that read spatial features (W-HMR's PyMAF-like decoder) call
:meth:`Backbone.feature_map`: ``(N, C, h, w)``, the map the pooled features come from.
:class:`TimmBackbone` wraps a ``timm`` model, randomly initialised or loaded from a local
checkpoint: no weights are ever fetched from a hub (``pretrained=False`` always).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["BACKBONES", "Backbone", "TimmBackbone", "load_backbone_weights"]

BACKBONES = {
    "resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50",
    "hrnet_w32": "hrnet_w32", "hrnet_w48": "hrnet_w48",
    "vit_tiny": "vit_tiny_patch16_224", "vit_small": "vit_small_patch16_224",
    "vit_base": "vit_base_patch16_224",
}
"""hmrkit backbone names -> timm model names."""


class Backbone(nn.Module):
    """A feature extractor: ``(N, 3, S, S)`` RGB in ``[0, 1]`` -> ``(N, out_features)``."""

    out_features: int
    """Width of the features."""

    def feature_map(self, images: Tensor) -> Tensor:
        """``(N, 3, S, S)`` RGB in ``[0, 1]`` -> ``(N, out_features, h, w)`` spatial features
        (the last map before pooling). Backbones without one say so."""
        raise NotImplementedError(f"{type(self).__name__} gives no spatial feature map")


class TimmBackbone(Backbone):
    """A ``timm`` model with ImageNet input normalisation and pooled features."""

    def __init__(self, image_size: int, name: str = "resnet18", checkpoint: str | None = None):
        """
        Args:
            image_size: crop side in pixels (given by the method: its ``crop_size``; it matters
                for ViTs, whose position grid depends on it).
            name: one of :data:`BACKBONES` (``resnet18/34/50``, ``hrnet_w32/w48``, ``vit_*``).
            checkpoint: optional local weights (a timm / torchvision state dict, or an hmrkit
                run whose ``backbone`` is kept, e.g. the keypoint pretext).
        """
        import timm

        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone '{name}'; choose one of {sorted(BACKBONES)}")
        kwargs = {"img_size": image_size} if name.startswith("vit") else {}
        self.net = timm.create_model(BACKBONES[name], pretrained=False, num_classes=0, **kwargs)
        if checkpoint is not None:
            load_backbone_weights(self.net, checkpoint)
        self.out_features = int(self.net.num_features)
        # samples hold RGB in [0, 1]; timm models expect ImageNet-normalised input
        self.register_buffer("pixel_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def normalize(self, images: Tensor) -> Tensor:
        """RGB in ``[0, 1]`` -> the timm model's input."""
        return (images - self.pixel_mean) / self.pixel_std

    def forward(self, images: Tensor) -> Tensor:
        return self.net(self.normalize(images))

    def feature_map(self, images: Tensor) -> Tensor:
        """The timm model's ``forward_features``: ``(N, C, h, w)`` for CNNs; a ViT's patch tokens
        (its class / register tokens dropped) laid out on their ``h x w`` grid."""
        out = self.net.forward_features(self.normalize(images))
        if out.dim() == 3:  # tokens (N, prefix + h w, C)
            tokens = out[:, int(getattr(self.net, "num_prefix_tokens", 0)):]
            h, w = self.net.patch_embed.grid_size
            out = tokens.transpose(1, 2).reshape(out.shape[0], out.shape[2], h, w)
        return out


def load_backbone_weights(model: nn.Module, checkpoint: str | Path) -> None:
    """Load a local state dict (also nested under ``state_dict``/``model``), ignoring the
    classifier; from an hmrkit checkpoint (a method or
    :class:`~hmrkit.models.pretext.KeypointPretext` run) only the ``backbone`` weights are
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
        if any(k.startswith("net.") for k in state):  # a TimmBackbone: its timm model
            state = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "head.", "classifier."))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(f"{path}: missing backbone weights {missing[:5]} ({len(missing)} in all)")
    if unexpected:
        raise ValueError(f"{path}: unexpected keys {unexpected[:5]} ({len(unexpected)} in all)")
