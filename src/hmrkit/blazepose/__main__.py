"""``python -m hmrkit.blazepose fetch``: fetch, check and convert the BlazePose models."""

from __future__ import annotations

import argparse
import sys

from .assets import (
    BLAZEPOSE_ENV_VAR,
    LANDMARK_VARIANTS,
    BlazePoseModelError,
    blazepose_dir,
    fetch,
    model_path,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hmrkit.blazepose",
        description="BlazePose GHUM model files (Apache-2.0, Google MediaPipe).")
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download (by package name), check and convert the models; "
                                     "idempotent")
    s = sub.add_parser("status", help="say which converted models are present and valid")
    for p in (f, s):
        p.add_argument("--dir", default=None,
                       help=f"model folder (default: ${BLAZEPOSE_ENV_VAR}, else "
                            "~/.cache/hmrkit/blazepose)")
    f.add_argument("--variants", nargs="+", choices=LANDMARK_VARIANTS,
                   default=list(LANDMARK_VARIANTS),
                   help="landmark networks to fetch (the detector always is)")
    f.add_argument("--from", dest="local", default=None,
                   help="folder holding the archives (wheel / npm tarball) to use before "
                        "downloading")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            paths = fetch(args.dir, args.variants, args.local)
            print(f"BlazePose models ready in {blazepose_dir(args.dir)} "
                  f"({', '.join(sorted(paths))})")
            return 0
        status = 0
        for name in ("detector", *LANDMARK_VARIANTS):
            try:
                print(f"{name}: {model_path(name, args.dir)}")
            except BlazePoseModelError as exc:
                print(f"{name}: {exc}")
                status = 1
        return status
    except BlazePoseModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
