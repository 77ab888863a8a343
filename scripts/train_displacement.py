"""Make samples for, train, and ship the dense refinement's displacement network
(``hmrkit.models.displacement``; docs/fit.md has the runs and their figures).

    # samples: initial estimates from perturbed truth and from a trained method, textures
    python scripts/train_displacement.py samples --data data/synth/train --limit 3000 \\
        --model src/hmrkit/models/weights/cliff-r18-96-synth.pt --out runs/disp/train.npz
    python scripts/train_displacement.py samples --data data/synth/val --limit 300 \\
        --model src/hmrkit/models/weights/cliff-r18-96-synth.pt --out runs/disp/val.npz --seed 1
    # train one network per input set (Table 3: full, no_texture, texture_only)
    python scripts/train_displacement.py train --train runs/disp/train.npz \\
        --val runs/disp/val.npz \\
        --inputs no_texture --steps 2000 --out runs/disp/no_texture
    # ship one (float16 weights)
    python scripts/train_displacement.py ship --net runs/disp/no_texture/net.pt \\
        --out src/hmrkit/models/weights/displacement-notex-64.pt
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def samples(args) -> int:
    from hmrkit.models.displacement_data import (
        SampleConfig,
        make_samples,
        model_estimates,
        save_samples,
    )

    estimates = None
    t0 = time.time()
    crop_style, crop_size = args.crop_style, args.crop_size
    if args.model:
        from hmrkit.models.checkpoints import load_method

        method = load_method(args.model)
        # the samples are cut as the refiner will cut this method's crops
        crop_style = crop_style or getattr(method, "crop_style", "box")
        crop_size = crop_size or method.crop_size
        estimates = model_estimates(method, args.data, None, limit=args.limit)
        print(f"{len(estimates['index'])} estimates of {args.model} in {time.time() - t0:.0f} s")
    cfg = SampleConfig(resolution=args.resolution, crop_size=crop_size or 96,
                       crop_style=crop_style or "box", seed=args.seed)
    if args.no_model_init:
        cfg.init_mix = {"perturbed": 1.0}
    arrays = make_samples(args.data, None, cfg, args.limit, estimates, args.texture,
                          args.texture_level)
    arrays["model"] = np.array(str(args.model or ""))
    save_samples(args.out, arrays)
    print(f"wrote {args.out}: {len(arrays['mask'])} samples in {time.time() - t0:.0f} s")
    return 0


def train(args) -> int:
    from hmrkit.models.displacement import INPUTS, NetConfig
    from hmrkit.models.displacement_data import load_samples, train_displacement

    torch.set_num_threads(args.threads)
    cfg = NetConfig(renders=INPUTS[args.inputs], width=args.width, blocks=args.blocks,
                    channels=args.channels, stacks=args.stacks, depth=args.depth)
    tr = load_samples(args.train)
    cfg.resolution = int(tr["mask"].shape[-1])
    va = load_samples(args.val) if args.val else None
    cfg.extra = {"inputs": args.inputs, "train": args.train, "val": args.val,
                 "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr}
    record = train_displacement(tr, va, cfg, args.steps, args.out, args.batch_size, args.lr,
                                args.seed, args.eval_every)
    print(json.dumps({k: v for k, v in record.items() if k != "history"}, indent=1))
    return 0


def ship(args) -> int:
    from hmrkit.models.displacement import load_displacement_net, save_displacement_net

    net = load_displacement_net(args.net)
    save_displacement_net(net, args.out, half=True)
    print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("samples")
    s.add_argument("--data", required=True, help="a synthetic split (shard folder)")
    s.add_argument("--out", required=True)
    s.add_argument("--limit", type=int, help="first N persons")
    s.add_argument("--model", help="a trained method whose estimates start some samples")
    s.add_argument("--no-model-init", action="store_true", help="perturbed truth only")
    s.add_argument("--resolution", type=int, default=64)
    s.add_argument("--crop-size", type=int,
                   help="person crop side before resampling (default: the model's, else 96)")
    s.add_argument("--crop-style", choices=("box", "blazepose"),
                   help="how the person crop is cut (default: as the model cuts it, else box)")
    s.add_argument("--texture", choices=("true", "noise", "brightness", "wrong", "none"),
                   help="one texture kind for all samples (test sets); default: the mix")
    s.add_argument("--texture-level", type=float, help="noise std / brightness factor")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=samples)
    t = sub.add_parser("train")
    t.add_argument("--train", required=True)
    t.add_argument("--val")
    t.add_argument("--out", required=True)
    t.add_argument("--inputs", choices=("full", "no_texture", "texture_only"), default="full")
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--width", type=int, default=16)
    t.add_argument("--blocks", type=int, default=1)
    t.add_argument("--channels", type=int, default=64)
    t.add_argument("--stacks", type=int, default=2)
    t.add_argument("--depth", type=int, default=3)
    t.add_argument("--eval-every", type=int, default=250)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=train)
    p = sub.add_parser("ship")
    p.add_argument("--net", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=ship)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
