"""The ``hmrkit`` command: ``hmrkit demo`` (more subcommands arrive with their issues)."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from hmrkit.demo import run_demo

    run_demo(out=args.out, num_bodies=args.num_bodies, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hmrkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="pose open Anny-24 bodies, write meshes and pictures")
    demo.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--num-bodies", type=int, default=8, help="bodies to pose (default: 8)")
    demo.add_argument("--seed", type=int, default=0, help="random seed for shapes")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
