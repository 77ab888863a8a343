"""Image backbones: a person crop in, a feature vector (or its spatial map) out.

:class:`Backbone` is what every method's ``backbone`` part is: ``(N, 3, S, S)`` RGB in
``[0, 1]`` -> ``(N, C)`` features, ``C = out_features``; it owns its input normalisation and
says which crops it reads (:attr:`Backbone.crop_style`). Methods call
:meth:`Backbone.from_batch`, which also reads backbone outputs cached with the batch
(:mod:`hmrkit.data.feature_cache`).

- :class:`TimmBackbone` wraps a ``timm`` model, randomly initialised or loaded from a local
  checkpoint: no weights are ever fetched from a hub (``pretrained=False`` always).
- :class:`BlazePoseBackbone` is BlazePose GHUM 3D's landmark network (lite, full, heavy;
  trained on real photos, :mod:`hmrkit.blazepose`) with a choice of its outputs as features:
  its regression trunk, its encoder, its 39 landmarks with visibility and presence, its metric
  world landmarks, its heatmaps. Frozen, partly or fully trainable.

Methods that read spatial features (W-HMR's PyMAF-like decoder) call
:meth:`Backbone.feature_map`: ``(N, C, h, w)``, the map the pooled features come from.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["BACKBONES", "BLAZEPOSE_INPUTS", "Backbone", "BlazePoseBackbone", "TimmBackbone",
           "load_backbone_weights"]

BACKBONES = {
    "resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50",
    "hrnet_w32": "hrnet_w32", "hrnet_w48": "hrnet_w48",
    "vit_tiny": "vit_tiny_patch16_224", "vit_small": "vit_small_patch16_224",
    "vit_base": "vit_base_patch16_224",
}
"""hmrkit backbone names -> timm model names."""


CACHE_PREFIX = "backbone/"
"""Batch keys of cached backbone outputs (``backbone/<name>``,
:mod:`hmrkit.data.feature_cache`)."""


class Backbone(nn.Module):
    """A feature extractor: ``(N, 3, S, S)`` RGB in ``[0, 1]`` -> ``(N, out_features)``."""

    out_features: int
    """Width of the features."""
    crop_style: str = "box"
    """The crops it reads (:data:`hmrkit.data.images.CROP_STYLES`): ``"box"``, the upright
    square around the person's box; ``"blazepose"``, MediaPipe's rotated square."""

    def from_batch(self, batch: dict[str, Tensor], image_key: str = "image") -> Tensor:
        """Features of the crops ``batch[image_key]`` (any leading shape ``(..., 3, S, S)`` ->
        ``(..., out_features)``)."""
        images = batch[image_key]
        lead = images.shape[:-3]
        return self(images.reshape(-1, *images.shape[-3:])).reshape(*lead, -1)

    def cache_signature(self) -> dict | None:
        """What a cache of this backbone's outputs must have been built with (None: the
        backbone cannot read cached outputs)."""
        return None

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


# --------------------------------------------------------------------------- BlazePose

BLAZEPOSE_INPUTS = ("trunk", "encoder", "landmarks", "world", "heatmaps", "presence")
"""Outputs of the BlazePose landmark network a :class:`BlazePoseBackbone` can give its head:

- ``trunk``: the regression trunk's last map (2 x 2 x 288, flattened: 1152 values), of which
  the landmarks, world landmarks and pose presence are linear functions;
- ``encoder``: the encoder's deepest residual map (8 x 8; 144 channels for full, 272 for
  heavy), average-pooled to ``encoder_pool`` x ``encoder_pool``;
- ``landmarks``: the 39 landmarks (33 body points and 6 auxiliary ones) in the crop, refined
  from the heatmaps as MediaPipe does: ``x, y`` normalised to ``[-1, 1]``, ``z`` in the same
  units, visibility and presence probabilities (39 x 5);
- ``world``: the 39 metric world landmarks (metres, hip-centred, in the crop's frame; 39 x 3);
- ``heatmaps``: the 33 body heatmaps as probabilities, average-pooled to 8 x 8 (33 x 64);
- ``presence``: the pose-presence probability (1).
"""
_RAW_SHAPES = {"landmarks": (39, 5), "world": (39, 3), "presence": ()}
TRAINABLE = ("frozen", "partial", "full")


class BlazePoseBackbone(Backbone):
    """BlazePose GHUM 3D's landmark network (:mod:`hmrkit.blazepose`) as a backbone.

    It reads MediaPipe's crops (:attr:`crop_style` ``"blazepose"``: 256 x 256 RGB in
    ``[0, 1]``, a rotated square centred on the hips, aligned from the hips to the shoulders,
    2.5 body radii wide; :func:`hmrkit.blazepose.roi.keypoint_roi` from labels,
    :func:`~hmrkit.blazepose.roi.detection_roi` from its detector), and gives the head the
    concatenation of the ``inputs`` it is asked for (:data:`BLAZEPOSE_INPUTS`).

    The network's weights come from ``python -m hmrkit.blazepose fetch`` (the user cache or
    ``directory``), never from a checkpoint: a frozen backbone keeps them out of the method's
    ``state_dict``, so a trained method stores its head only and references the network by
    ``variant``. A trainable one (``partial``, ``full``) saves the weights it trains.

    Frozen, it can read its outputs from a feature cache instead of the images
    (:meth:`from_batch`, :mod:`hmrkit.data.feature_cache`): :meth:`raw` is what is cached,
    :meth:`features` turns it into the head's input.
    """

    crop_style = "blazepose"

    def __init__(self, image_size: int = 256, variant: str = "full",
                 inputs: tuple[str, ...] = ("trunk", "landmarks", "world"),
                 trainable: str = "frozen", encoder_pool: int = 2,
                 directory: str | None = None):
        """
        Args:
            image_size: crop side (given by the method's ``crop_size``); must be 256.
            variant: ``lite``, ``full`` or ``heavy`` (:data:`hmrkit.blazepose.assets
                .LANDMARK_VARIANTS`).
            inputs: the outputs fed to the head (:data:`BLAZEPOSE_INPUTS`), concatenated in
                this order.
            trainable: ``frozen`` (no gradient reaches the network; its outputs may be cached),
                ``partial`` (the regression branch trains: the operators that lead to the
                landmarks and not to the heatmaps or the mask), ``full`` (everything trains).
            encoder_pool: side of the average-pooled encoder map (``encoder`` input).
            directory: the BlazePose model folder (default: ``$HMRKIT_BLAZEPOSE_DIR``, then the
                user cache).
        """
        from hmrkit.blazepose.assets import LANDMARK_VARIANTS, load_model
        from hmrkit.blazepose.roi import LANDMARK_RES

        super().__init__()
        if int(image_size) != LANDMARK_RES:
            raise ValueError(f"BlazePoseBackbone reads {LANDMARK_RES} px crops; set the "
                             f"method's crop_size to {LANDMARK_RES} (got {image_size})")
        if variant not in LANDMARK_VARIANTS:
            raise ValueError(f"BlazePoseBackbone: unknown variant {variant!r}; choose one of "
                             f"{LANDMARK_VARIANTS}")
        inputs = tuple(inputs)
        unknown = [k for k in inputs if k not in BLAZEPOSE_INPUTS]
        if not inputs or unknown or len(set(inputs)) != len(inputs):
            raise ValueError(f"BlazePoseBackbone: inputs must be distinct names from "
                             f"{BLAZEPOSE_INPUTS}, got {list(inputs)}")
        if trainable not in TRAINABLE:
            raise ValueError(f"BlazePoseBackbone: trainable must be one of {TRAINABLE}, "
                             f"got {trainable!r}")
        if int(encoder_pool) < 1:
            raise ValueError(f"BlazePoseBackbone: encoder_pool must be >= 1, got {encoder_pool}")
        self.variant, self.inputs, self.trainable = variant, inputs, trainable
        self.encoder_pool = int(encoder_pool)
        graph = load_model(variant, directory)
        self.weights_sha256 = _weights_sha256(variant, directory)
        self._trunk, self._encoder = _blazepose_taps(graph)
        self.trunk_width = _numel(graph.tensors[self._trunk]["shape"][1:])
        self.encoder_channels = int(graph.tensors[self._encoder]["shape"][-1])
        if trainable == "frozen":
            graph.requires_grad_(False)
            self.__dict__["network"] = graph  # not a submodule: not in the state_dict
        else:
            self.network = graph
            if trainable == "partial":
                keep = _regression_parameters(graph)
                for name, param in graph.params.items():
                    param.requires_grad_(name in keep)
        self.out_features = sum(self.input_widths().values())

    # ------------------------------------------------------------------ sizes
    def raw_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes (per crop) of the raw outputs :meth:`raw` returns for :attr:`inputs`."""
        shapes = {"trunk": (self.trunk_width,),
                  "encoder": (self.encoder_channels * self.encoder_pool ** 2,),
                  "heatmaps": (33, 64), **_RAW_SHAPES}
        return {k: shapes[k] for k in self.inputs}

    def input_widths(self) -> dict[str, int]:
        """Width of each input in the feature vector."""
        return {k: _numel(v) or 1 for k, v in self.raw_shapes().items()}

    def cache_signature(self) -> dict | None:
        """The network, its outputs and the crops a cache must match (None unless frozen)."""
        from hmrkit.blazepose.roi import KEYPOINT_RADIUS_SCALE, LANDMARK_RES, ROI_SCALE

        if self.trainable != "frozen":
            return None
        return {"backbone": "BlazePoseBackbone", "variant": self.variant,
                "weights_sha256": self.weights_sha256, "encoder_pool": self.encoder_pool,
                "crop_style": self.crop_style, "crop_size": LANDMARK_RES,
                "roi_scale": ROI_SCALE, "radius_scale": KEYPOINT_RADIUS_SCALE}

    # ------------------------------------------------------------------ forward
    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if "network" in self.__dict__:  # the frozen network is not a submodule
            self.__dict__["network"]._apply(fn)
        return self

    def raw(self, images: Tensor, names: tuple[str, ...] | None = None) -> dict[str, Tensor]:
        """The network's outputs ``names`` (default :attr:`inputs`) for crops ``(N, 3, 256,
        256)``: what a feature cache stores (shapes :meth:`raw_shapes`; ``landmarks`` in crop
        pixels of hmrkit's convention, refined from the heatmaps; ``visibility`` and
        ``presence`` as logits, as the network gives them)."""
        from hmrkit.blazepose.landmarks import refine_from_heatmaps, split_outputs
        from hmrkit.blazepose.roi import LANDMARK_RES, NETWORK_PIXEL_OFFSET

        names = self.inputs if names is None else names
        net = self.network
        keep = [i for n, i in (("trunk", self._trunk), ("encoder", self._encoder)) if n in names]
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trainable != "frozen"):
            out = net(images, keep=keep)
            named = split_outputs({k: out[k] for k in net.output_names()})
            raw: dict[str, Tensor] = {}
            if "trunk" in names:
                raw["trunk"] = out[net.tensors[self._trunk]["name"]].flatten(1)
            if "encoder" in names:
                enc = out[net.tensors[self._encoder]["name"]]
                raw["encoder"] = nn.functional.adaptive_avg_pool2d(
                    enc, self.encoder_pool).flatten(1)
            if "landmarks" in names:
                lm = named["landmarks"]
                xy = refine_from_heatmaps(lm[..., :2], named["heatmap_logits"], LANDMARK_RES)
                raw["landmarks"] = torch.cat([xy + NETWORK_PIXEL_OFFSET, lm[..., 2:]], -1)
            if "world" in names:
                raw["world"] = named["world"]
            if "heatmaps" in names:
                heat = torch.sigmoid(named["heatmap_logits"][:, :33])
                raw["heatmaps"] = nn.functional.adaptive_avg_pool2d(heat, 8).flatten(2)
            if "presence" in names:
                raw["presence"] = named["presence"]
        return raw

    def features(self, raw: dict[str, Tensor]) -> Tensor:
        """The head's input ``(N, out_features)`` from raw outputs (:meth:`raw`): landmarks
        normalised to the crop (``2 p / 256 - 1``, ``z / 128``), probabilities through the
        sigmoid, the rest as they are; concatenated in the order of :attr:`inputs`."""
        from hmrkit.blazepose.roi import LANDMARK_RES

        parts = []
        for name in self.inputs:
            value = raw[name].float()
            if name == "landmarks":
                half = LANDMARK_RES / 2
                value = torch.cat([value[..., :2] / half - 1, value[..., 2:3] / half,
                                   torch.sigmoid(value[..., 3:5])], -1)
            elif name == "presence":
                value = value.reshape(-1, 1)
            parts.append(value.flatten(1))
        return torch.cat(parts, 1)

    def forward(self, images: Tensor) -> Tensor:
        return self.features(self.raw(images))

    def feature_map(self, images: Tensor) -> Tensor:
        """The encoder's deepest residual map ``(N, C, 8, 8)`` of crops ``(N, 3, 256, 256)``
        (C = 144 for full, 272 for heavy): the spatial map of methods that decode one
        (W-HMR's PyMAF-like head); the ``encoder`` input is its average pool."""
        net = self.network
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trainable != "frozen"):
            return net(images, keep=[self._encoder])[net.tensors[self._encoder]["name"]]

    def from_batch(self, batch: dict[str, Tensor], image_key: str = "image") -> Tensor:
        """Features of ``batch[image_key]``, or of the cached outputs ``backbone/<input>`` when
        the batch holds them (a frozen backbone only; the cache's signature was checked when
        the data was built, :mod:`hmrkit.data.feature_cache`)."""
        cached = [f"{CACHE_PREFIX}{k}" for k in self.inputs]
        if image_key == "image" and all(k in batch for k in cached):
            if self.trainable != "frozen":
                raise ValueError("BlazePoseBackbone: the batch holds cached backbone outputs but "
                                 f"the backbone trains ({self.trainable!r}); train it from images")
            return self.features({k: batch[f"{CACHE_PREFIX}{k}"] for k in self.inputs})
        return super().from_batch(batch, image_key)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _weights_sha256(variant: str, directory) -> str:
    from hmrkit.blazepose.assets import _read_manifest, blazepose_dir, model_path

    path = model_path(variant, directory)
    return str(_read_manifest(blazepose_dir(directory)).get(path.name, {}).get("sha256", ""))


def _ancestor_ops(graph, tensor: int) -> set[int]:
    """Indices of the operators ``tensor`` depends on."""
    producer = {o: k for k, op in enumerate(graph.ops) for o in op["outputs"]}
    seen: set[int] = set()
    todo = [tensor]
    while todo:
        k = producer.get(todo.pop())
        if k is None or k in seen:
            continue
        seen.add(k)
        todo.extend(graph.ops[k]["inputs"])
    return seen


def _output_tensor(graph, width: int | None = None, channels: int | None = None) -> int:
    for i in graph.output_index:
        shape = graph.tensors[i]["shape"]
        if (width is not None and shape[1:] == [width]) or (
                channels is not None and len(shape) == 4 and shape[-1] == channels):
            return i
    raise ValueError("not a BlazePose landmark graph")


def _blazepose_taps(graph) -> tuple[int, int]:
    """Tensor indices of the regression trunk's last map (the input of the landmark layer) and
    of the encoder's deepest residual map (the last ``ADD`` at the coarsest resolution the
    mask decoder reads)."""
    landmarks = _output_tensor(graph, width=195)
    producer = {o: k for k, op in enumerate(graph.ops) for o in op["outputs"]}
    trunk = graph.ops[producer[landmarks]]["inputs"][0]
    while graph.ops[producer[trunk]]["type"] == "RESHAPE":
        trunk = graph.ops[producer[trunk]]["inputs"][0]
    trunk = graph.ops[producer[trunk]]["inputs"][0] if len(
        graph.tensors[trunk]["shape"]) == 4 and graph.tensors[trunk]["shape"][1] == 1 else trunk
    mask = _output_tensor(graph, channels=1)
    adds = [graph.ops[k]["outputs"][0] for k in sorted(_ancestor_ops(graph, mask))
            if graph.ops[k]["type"] == "ADD"]
    side = min(graph.tensors[t]["shape"][1] for t in adds)
    encoder = [t for t in adds if graph.tensors[t]["shape"][1] == side][-1]
    return trunk, encoder


def _regression_parameters(graph) -> set[str]:
    """Names of the parameters of the operators leading to the landmarks and not to the
    heatmaps or the mask (BlazePose's regression branch)."""
    landmarks = _output_tensor(graph, width=195)
    dense = set()
    for i in graph.output_index:
        if len(graph.tensors[i]["shape"]) == 4:
            dense |= _ancestor_ops(graph, i)
    ops = _ancestor_ops(graph, landmarks) - dense
    return {str(i) for k in ops for i in graph.ops[k]["inputs"] if str(i) in graph.params}
