"""Synthetic data rate: labelled one-person full images (about 640x480) per second.

    python benchmarks/bench_synth.py --n 400 --workers 2 [--poses v1]

Writes a throw-away split of ``SceneConfig(people=(1.0,))`` scenes (all labels: image,
instances, IUV, depth, texture, keypoints, 3D joints, parameters) with the same code path
as ``hmrkit synth`` and prints scenes and people per second, start-up included.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time

from hmrkit.data.shards import write_split
from hmrkit.data.synthetic.scene import V1_PEOPLE, SceneConfig, generate_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--poses", choices=("photo", "v1"), default="photo",
                        help="people: the photo-like mix (default) or synth-v1's")
    args = parser.parse_args()
    config = SceneConfig(seed=7, people=(1.0,), **(V1_PEOPLE if args.poses == "v1" else {}))
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        manifest = write_split(functools.partial(generate_record, config), args.n, out,
                               shard_size=500, workers=args.workers, progress=False)
        seconds = time.perf_counter() - start
    people = manifest["num_persons"]
    print(f"{manifest['num_records']} one-person scenes ({args.poses} poses), {args.workers} "
          f"workers: {seconds:.1f} s, "
          f"{people / seconds:.1f} labelled people/s")


if __name__ == "__main__":
    main()
