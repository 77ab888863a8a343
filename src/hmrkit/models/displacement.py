"""The displacement network of the dense-refinement paper (section 3.1, eq. 3).

Input: the person crop (RGB) and renders of the current estimate in that crop (textured RGB,
depth, normals, unique vertex colours: :func:`hmrkit.fit.dense.render_inputs`). Two encoder
branches (the first stage of ResNet-50, its stem and ``layer1``, with every stride 1 and no
max-pool, so features keep the input resolution; they differ only in their input channels)
map image and renders to a common feature space; their concatenation goes through a stacked
hourglass (Newell et al.; the paper: 4 stacks) whose every stack predicts a 2-channel
displacement per pixel. The loss (eq. 3) is the mean end-point error over the rendered pixels,
applied after every stack; the last stack's output is the prediction. Trained from scratch.

Sizes are arguments (the paper's: ``width=64, blocks=3, channels=256, stacks=4, depth=4``) so
that a tiny version trains on a CPU. Displacements are in crop pixels of the input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from hmrkit.fit.dense import RENDER_CHANNELS

__all__ = ["DisplacementNet", "NetConfig", "endpoint_error", "load_displacement_net",
           "save_displacement_net", "stacked_loss"]

INPUTS = {
    "full": ("rgb", "depth", "normals", "vertex_colors"),
    "no_texture": ("depth", "normals", "vertex_colors"),
    "texture_only": ("rgb",),
}
"""Which renders a network reads (paper Table 3: full, w/o texture, texture only)."""


@dataclass
class NetConfig:
    """Sizes and inputs of a :class:`DisplacementNet`."""

    renders: tuple[str, ...] = INPUTS["full"]
    """Renders read, in this order (keys of :data:`hmrkit.fit.dense.RENDER_CHANNELS`)."""
    width: int = 64
    """Stem width of the encoder branches (ResNet-50: 64); their output is ``4 width``."""
    blocks: int = 3
    """Bottleneck blocks of ``layer1`` (ResNet-50: 3)."""
    channels: int = 256
    """Hourglass channels."""
    stacks: int = 4
    """Hourglass stacks (the paper: 4)."""
    depth: int = 4
    """Down-sampling levels of each hourglass (Newell: 4)."""
    resolution: int = 64
    """Side of the square crops it is trained on (pixels)."""
    extra: dict = field(default_factory=dict)
    """Free-form record (training data, steps, ...)."""

    @property
    def render_channels(self) -> int:
        return sum(RENDER_CHANNELS[r] for r in self.renders)


class Bottleneck(nn.Module):
    """ResNet bottleneck ``1x1 -> 3x3 -> 1x1 (x4)`` with a projection shortcut, stride 1."""

    def __init__(self, cin: int, width: int, expansion: int = 4):
        super().__init__()
        cout = width * expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True), nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = nn.Identity() if cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.skip(x))


class Encoder(nn.Sequential):
    """ResNet-50's stem and ``layer1`` with stride 1 everywhere and no max-pool."""

    def __init__(self, cin: int, width: int, blocks: int):
        layers = [nn.Conv2d(cin, width, 7, padding=3, bias=False), nn.BatchNorm2d(width),
                  nn.ReLU(inplace=True)]
        c = width
        for _ in range(blocks):
            layers.append(Bottleneck(c, width))
            c = 4 * width
        super().__init__(*layers)


class Residual(nn.Module):
    """Newell's residual module (pre-activation bottleneck), ``c -> c``."""

    def __init__(self, c: int):
        super().__init__()
        h = max(c // 2, 1)
        self.body = nn.Sequential(
            nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, h, 1),
            nn.BatchNorm2d(h), nn.ReLU(inplace=True), nn.Conv2d(h, h, 3, padding=1),
            nn.BatchNorm2d(h), nn.ReLU(inplace=True), nn.Conv2d(h, c, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels (max-pool down, nearest up, skip branches)."""

    def __init__(self, c: int, depth: int):
        super().__init__()
        self.skip = Residual(c)
        self.down = Residual(c)
        self.inner = Hourglass(c, depth - 1) if depth > 1 else Residual(c)
        self.up = Residual(c)

    def forward(self, x: Tensor) -> Tensor:
        low = self.down(nn.functional.max_pool2d(x, 2))
        low = self.up(self.inner(low))
        return self.skip(x) + nn.functional.interpolate(low, size=x.shape[-2:], mode="nearest")


class DisplacementNet(nn.Module):
    """Image + renders -> per-pixel 2D displacements, one map per stack (module doc)."""

    def __init__(self, config: NetConfig | None = None):
        super().__init__()
        cfg = self.config = config or NetConfig()
        self.image_encoder = Encoder(3, cfg.width, cfg.blocks)
        self.render_encoder = Encoder(cfg.render_channels, cfg.width, cfg.blocks)
        c = cfg.channels
        self.merge = nn.Sequential(nn.Conv2d(8 * cfg.width, c, 1), nn.BatchNorm2d(c),
                                   nn.ReLU(inplace=True))
        self.hourglasses = nn.ModuleList(Hourglass(c, cfg.depth) for _ in range(cfg.stacks))
        self.features = nn.ModuleList(
            nn.Sequential(Residual(c), nn.Conv2d(c, c, 1), nn.BatchNorm2d(c),
                          nn.ReLU(inplace=True)) for _ in range(cfg.stacks))
        self.heads = nn.ModuleList(nn.Conv2d(c, 2, 1) for _ in range(cfg.stacks))
        self.back_features = nn.ModuleList(nn.Conv2d(c, c, 1) for _ in range(cfg.stacks - 1))
        self.back_heads = nn.ModuleList(nn.Conv2d(2, c, 1) for _ in range(cfg.stacks - 1))
        for head in self.heads:  # start from "no displacement"
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, image: Tensor, renders: Tensor) -> list[Tensor]:
        """``image (B, 3, S, S)`` in [0, 1], ``renders (B, C, S, S)`` (the config's renders
        concatenated) -> ``stacks`` maps ``(B, 2, S, S)`` in crop pixels (last = prediction).
        ``S`` must be divisible by ``2^depth``."""
        x = self.merge(torch.cat([self.image_encoder(image), self.render_encoder(renders)], 1))
        out = []
        for k, hourglass in enumerate(self.hourglasses):
            y = self.features[k](hourglass(x))
            pred = self.heads[k](y)
            out.append(pred)
            if k < len(self.hourglasses) - 1:
                x = x + self.back_features[k](y) + self.back_heads[k](pred)
        return out


def endpoint_error(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """(B,) eq. 3: mean over the rendered pixels (``mask (B, 1, S, S)``) of the 2D distance
    between predicted and true displacements ``(B, 2, S, S)`` (0 where nothing is rendered)."""
    dist = ((pred - target) ** 2).sum(1, keepdim=True).clamp_min(1e-12).sqrt()
    m = mask.to(dist)
    return (dist * m).sum((1, 2, 3)) / m.sum((1, 2, 3)).clamp_min(1.0)


def stacked_loss(preds: list[Tensor], target: Tensor, mask: Tensor) -> Tensor:
    """The training loss: eq. 3 after every stack, summed over stacks, mean over the batch."""
    return sum(endpoint_error(p, target, mask).mean() for p in preds)


def save_displacement_net(net: DisplacementNet, path, half: bool = False) -> None:
    """Write weights and config atomically (``half``: float16 weights)."""
    from hmrkit.io import atomic_torch_save

    state = {k: (v.half() if half and v.is_floating_point() else v)
             for k, v in net.state_dict().items()}
    atomic_torch_save(path, {"format": "hmrkit-displacement-net", "config": asdict(net.config),
                             "state_dict": state})


def load_displacement_net(path, device="cpu") -> DisplacementNet:
    """A network written by :func:`save_displacement_net` (eval mode, float32); errors name
    the file."""
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except (OSError, RuntimeError, ValueError) as err:
        raise ValueError(f"{path}: not a readable displacement network ({err})") from None
    if not isinstance(blob, dict) or blob.get("format") != "hmrkit-displacement-net":
        raise ValueError(f"{path}: not an hmrkit displacement network")
    cfg = dict(blob["config"])
    cfg["renders"] = tuple(cfg["renders"])
    net = DisplacementNet(NetConfig(**cfg))
    net.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    return net.to(device).eval()
