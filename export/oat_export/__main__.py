"""python -m oat_export --checkpoint policy.pt --out DIR [--precision fp32|fp16|int8] [--variants fp16 int8]"""
import argparse
import json
import os
import sys

import torch

from .export import OPSET


def main(argv=None):
    ap = argparse.ArgumentParser(prog="oat_export", description="Export a TokenPolicy checkpoint as an oat_edge bundle")
    ap.add_argument("--checkpoint", required=True, help="policy.pt of oat-edge train-policy (state or pixel policy; "
                    "a pixel policy's bundle takes named inputs: state and uint8 camera frames)")
    ap.add_argument("--out", required=True, help="bundle directory to write")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    ap.add_argument("--variants", nargs="*", default=[], choices=["fp32", "fp16", "int8"],
                    help="extra sibling bundles <out>_<precision> with measured error vs fp32")
    ap.add_argument("--tasks", nargs="*", default=None,
                    help="task names of the one-hot in the observation (default: the checkpoint's)")
    ap.add_argument("--obs-layout", default=None, help="observation layout text (default: the checkpoint's)")
    ap.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    ap.add_argument("--no-parity", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from oat_edge.atomic import OutputError, check_output_dir
    from oat_edge.train.checkpoint import load_checkpoint

    from .export import export_bundle
    from .policy_checkpoint import policy_from_checkpoint
    if not os.path.isfile(args.checkpoint) and not os.path.isdir(args.checkpoint):
        print(f"oat_export: error: checkpoint {args.checkpoint!r} not found (train one with "
              f"oat-edge train-policy)", file=sys.stderr)
        return 2
    try:
        check_output_dir(args.out, force=True)  # before the slow part; re-exporting is normal
        ck = load_checkpoint(args.checkpoint, what="--checkpoint")
        tp, encoder = policy_from_checkpoint(ck)  # encoder: None for a state policy
        # train_policy stores the task list and observation layout next to the weights
        tasks = args.tasks if args.tasks is not None else ck.get("tasks", [])
        obs_layout = args.obs_layout if args.obs_layout is not None else ck.get("obs_layout", "")
        rep = export_bundle(tp, args.out, tasks=tasks, obs_layout=obs_layout, opset=args.opset,
                            precision=args.precision, check_parity=not args.no_parity,
                            variants=args.variants, observation_encoder=encoder)
    except (OutputError, ValueError) as exc:
        print(f"oat_export: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(rep, indent=2))
    if not rep.get("installed", True):
        print(f"oat_export: error: parity check failed; {args.out} was not replaced",
              file=sys.stderr)
    return 0 if rep.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
