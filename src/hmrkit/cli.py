"""The ``hmrkit`` command: ``demo``, ``synth``, ``cache``, ``train``, ``evaluate``, ``predict``,
``fit``, ``export``.

``hmrkit train`` is Lightning's CLI (``hmrkit train --help``); the others are argparse.
"""

from __future__ import annotations

import argparse
import sys

from hmrkit.args import OneLineParser, output_folder, positive_int


def _demo(args: argparse.Namespace) -> int:
    from hmrkit.demo import run_demo
    from hmrkit.models.checkpoints import CheckpointError

    try:
        run_demo(out=args.out, scenes=args.scenes, seed=args.seed, checkpoint=args.checkpoint,
                 refiner=args.refiner, refiner_args=args.refiner_arg)
    except (CheckpointError, ValueError) as err:  # ValueError: RegistryError, RefinerError
        print(f"hmrkit demo: {err}", file=sys.stderr)
        return 2
    return 0


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like i/N, got '{text}'") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard i/N needs 0 <= i < N, got '{text}'")
    return i, n


def _synth(args: argparse.Namespace) -> int:
    import functools
    import warnings
    from pathlib import Path

    from hmrkit.data.shards import SplitMismatchError, write_split
    from hmrkit.data.synthetic.scene import (
        BENCHMARK_SIZES,
        BENCHMARKS,
        V1_PEOPLE,
        SceneConfig,
        config_record,
        generate_record,
    )

    if args.benchmark:
        config = BENCHMARKS[args.benchmark]
        n = args.n if args.n is not None else BENCHMARK_SIZES[args.benchmark]
    else:
        if args.n is None:
            print("hmrkit synth: error: give --n N (number of scenes) or --benchmark NAME",
                  file=sys.stderr)
            raise SystemExit(2)
        people = V1_PEOPLE if args.poses == "v1" else {}
        config = SceneConfig(seed=args.seed, split=args.split,
                             background_folder=args.backgrounds, **people)
        n = args.n
    try:
        with warnings.catch_warnings(record=True) as caught:  # one line each, below
            warnings.simplefilter("always")
            manifest = write_split(
                functools.partial(generate_record, config), n, Path(args.out),
                shard_size=args.shard_size, shard=args.shard, workers=args.workers,
                meta={"engine": "hmrkit.synthetic.v1", "config": config_record(config)},
                overwrite=args.overwrite,
            )
    except SplitMismatchError as err:
        print(f"hmrkit synth: {err}", file=sys.stderr)
        return 2
    for warning in caught:
        print(f"hmrkit synth: {warning.message}", file=sys.stderr)
    state = "complete" if manifest["complete"] else f"{len(manifest['missing'])} shard(s) to go"
    print(f"wrote {args.out}: {manifest['num_records']} of {n} scenes in "
          f"{len(manifest['shards'])} verified shard(s) ({state})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="hmrkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="synthetic scenes -> shipped model -> meshes, overlays, "
                          "metrics next to the ground truth")
    demo.add_argument("--out", default="demo_out", type=output_folder,
                      help="output folder (default: demo_out)")
    demo.add_argument("--scenes", type=positive_int, default=6,
                      help="synthetic scenes (default: 6)")
    demo.add_argument("--seed", type=int, default=0, help="scene seed offset (default: 0)")
    demo.add_argument("--checkpoint", help="a method checkpoint (default: the shipped model)")
    demo.add_argument("--refiner", "--refine", help="refine the model's estimates (keypoints, "
                      "keypoints-labels, dense, dense-labels, ...)")
    demo.add_argument("--refiner-arg", action="append", metavar="NAME=VALUE",
                      help="an option of the refiner (repeatable)")
    demo.set_defaults(func=_demo)

    synth = sub.add_parser("synth", help="render labelled synthetic scenes into tar shards")
    synth.add_argument("--out", required=True, type=output_folder,
                       help="output folder of the split")
    synth.add_argument("--n", type=positive_int, help="number of scenes (full images)")
    synth.add_argument("--split", choices=("train", "val", "test"), default="train")
    synth.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    synth.add_argument("--workers", type=positive_int, default=1, help="processes (default 1)")
    synth.add_argument("--shard", type=_shard, help="write only job i of N, e.g. 3/16")
    synth.add_argument("--shard-size", type=positive_int, default=500, help="scenes per shard")
    synth.add_argument("--backgrounds", help="optional folder of background photos")
    synth.add_argument("--poses", choices=("photo", "v1"), default="photo",
                       help="people: 'photo' (default: photo-like pose mix, seats, no "
                       "self-intersections) or 'v1' (synth-v1's people)")
    synth.add_argument("--benchmark", choices=("synth-v1", "synth-v1-hard", "synth-v2"),
                       help="a fixed, seeded test set (overrides --seed/--split)")
    synth.add_argument("--overwrite", action="store_true",
                       help="replace the shards of another split in --out (default: refuse)")
    synth.set_defaults(func=_synth)

    sub.add_parser("train", help="train a method from a YAML config (Lightning CLI; see "
                   "'hmrkit train --help')", add_help=False)

    from hmrkit import cache, evaluate, predict  # light imports: torch loads in run()

    ca = sub.add_parser("cache", help="a frozen BlazePose backbone's outputs for a synthetic "
                        "split, on disk (train heads without rerunning it)",
                        description=cache.__doc__.split("\n\n")[0])
    cache.add_arguments(ca)
    ca.set_defaults(func=cache.run)

    ev = sub.add_parser("evaluate", help="metrics of a checkpoint on a split (JSON, Markdown)")
    evaluate.add_arguments(ev)
    ev.set_defaults(func=evaluate.run)
    pr = sub.add_parser("predict", help="meshes, parameters and overlays for images or videos",
                        description=predict.DESCRIPTION, epilog=predict.EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_arguments(pr)
    pr.set_defaults(func=predict.run)
    fi = sub.add_parser("fit", help="fit the body to the people in images (BlazePose landmarks; "
                        "from scratch or from a method's estimates)",
                        description=predict.FIT_DESCRIPTION, epilog=predict.EPILOG)
    predict.add_arguments(fi, fit=True)
    fi.set_defaults(func=predict.run)
    ex = sub.add_parser("export", help="the inference part of a checkpoint (small file)")
    ex.add_argument("--checkpoint", required=True)
    ex.add_argument("--out", required=True)
    ex.add_argument("--float32", action="store_true", help="keep float32 weights (default fp16)")
    ex.set_defaults(func=_export)
    return parser


def _export(args: argparse.Namespace) -> int:
    from hmrkit.models.checkpoints import CheckpointError, export_method

    try:
        summary = export_method(args.checkpoint, args.out, half=not args.float32)
    except CheckpointError as err:
        print(f"hmrkit export: {err}", file=sys.stderr)
        return 2
    print(f"wrote {summary['out']}: {summary['bytes'] / 1e6:.1f} MB, "
          f"{summary['parameters'] / 1e6:.2f} M values")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        from hmrkit.train import main as train

        return train(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
