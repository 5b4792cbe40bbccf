"""Create datasets and info files.

  python tools/create_data.py synthetic --out data/synthetic [--seed 0] [--scenes 5] [--samples-per-scene 20]
                                        [--image-size 320 180] [--workers 2]
  python tools/create_data.py nuscenes --root data/nuscenes --version v1.0-trainval --out data/nuscenes
                                       [--workers 4] [--occ-root DIR]
  python tools/create_data.py openlane_v2 --root data/openlane_v2 --subset A|B [--splits train val] [--out DIR]

``synthetic`` writes a nuScenes-format world (v1.0-mini tables, images, LiDAR, Occ3D and OpenLane-V2
labels) and then its info files; ``nuscenes`` writes ``nuscenes_infos_{split}.pkl`` for a real (or
synthetic) nuScenes root, resumable through per-scene shards. ``--occ-root DIR`` takes the Occ3D labels
from an Occ3D-nuScenes release folder (``DIR/gts/<scene name>/<sample token>/labels.npz``, cross-checked
against ``DIR/annotations.json`` when present; docs/occupancy.md); without it, labels under ``--root/gts/``
are used. ``openlane_v2`` writes ``openlane_v2_infos_subset_{A,B}_{split}.pkl`` (our info format, paths
relative to ``--root``, default output folder ``--root``) from ``--root/data_dict_subset_{A,B}_{split}.pkl``
or, without it, from the frame jsons ``--root/{split}/*/info/*.json`` (docs/data.md, "OpenLane-V2").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from perception.data.infos import InfoFileError, create_nuscenes_infos
from perception.data.openlane_v2 import create_openlane_v2_infos
from perception.data.synthetic import VERSION, WorldConfig, generate_world


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    syn = sub.add_parser("synthetic", help="generate the synthetic nuScenes-format world and its infos")
    syn.add_argument("--out", required=True)
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--scenes", type=int, default=5)
    syn.add_argument("--samples-per-scene", type=int, default=20)
    syn.add_argument("--image-size", type=int, nargs=2, default=(320, 180), metavar=("W", "H"))
    syn.add_argument("--workers", type=int, default=2)
    nus = sub.add_parser("nuscenes", help="build info files for a nuScenes root")
    nus.add_argument("--root", required=True)
    nus.add_argument("--version", required=True, choices=["v1.0-trainval", "v1.0-mini", "v1.0-test"])
    nus.add_argument("--out", required=True)
    nus.add_argument("--workers", type=int, default=4)
    nus.add_argument("--occ-root", default=None, metavar="DIR",
                     help="Occ3D-nuScenes release folder holding gts/<scene>/<token>/labels.npz (and annotations.json)")
    olv = sub.add_parser("openlane_v2", help="build info files for an OpenLane-V2 root (subset A or B)")
    olv.add_argument("--root", required=True, help="folder holding {split}/ and data_dict_subset_{A,B}_{split}.pkl")
    olv.add_argument("--subset", required=True, choices=["A", "B"])
    olv.add_argument("--splits", nargs="+", default=["train", "val"])
    olv.add_argument("--out", default=None, help="output folder (default: --root)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.command == "synthetic":
        config = WorldConfig(
            args.out,
            seed=args.seed,
            num_scenes=args.scenes,
            samples_per_scene=args.samples_per_scene,
            image_size=tuple(args.image_size),
            workers=args.workers,
        )
        generate_world(config)
        written = create_nuscenes_infos(args.out, VERSION, args.out, workers=1)
    elif args.command == "openlane_v2":
        if not Path(args.root).is_dir():
            parser.error(f"--root {args.root} is not a directory")
        out_dir = Path(args.out if args.out is not None else args.root)
        written = {}
        for split in args.splits:
            out = out_dir / f"openlane_v2_infos_subset_{args.subset}_{split}.pkl"
            try:
                written[split] = create_openlane_v2_infos(args.root, args.subset, split, out)
            except InfoFileError as err:
                return _fail(str(err))
    else:
        if not (Path(args.root) / args.version).is_dir():
            parser.error(f"--root {args.root} has no {args.version}/ table folder")
        occ_root = args.occ_root
        if occ_root is not None and not (Path(occ_root) / "gts").is_dir():
            what = "does not exist" if not Path(occ_root).is_dir() else "has no gts/ folder"
            return _fail(f"--occ-root {occ_root} {what} (expected DIR/gts/<scene name>/<sample token>/labels.npz)")
        reports = {}
        try:
            written = create_nuscenes_infos(
                args.root, args.version, args.out, workers=args.workers, occ_root=occ_root, occupancy_reports=reports
            )
        except InfoFileError as err:
            return _fail(str(err))
        for split, report in reports.items():
            print(f"{split}: {report.summary()}")
    for split, path in written.items():
        print(f"{split}: {path}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def _fail(message: str) -> int:
    print(f"create_data.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    raise SystemExit(main())
