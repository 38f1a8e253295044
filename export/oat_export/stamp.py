"""FSQ levels stamped into the graphs that depend on them.

The decoder graph reads FSQ codes and the encoder graph writes FSQ ids; both were trained for one
set of levels, which the manifest states as `tokenizer.fsq_levels`. The exporter also writes them
into those two graphs as the ONNX metadata property `oat_edge.fsq_levels` (a JSON list, "[8, 5, 5, 5]"),
so a manifest paired with graphs of another tokenizer is caught when the bundle loads.

    python -m oat_export.stamp BUNDLE [BUNDLE ...]

stamps a bundle exported before the property existed, from its manifest's levels, after checking
them against the graphs' behaviour: the encoder must map actions to ids below the product of the
levels, and ids -> codes (with these levels) -> decoder -> encoder, repeated, must settle on its
own ids (a trained tokenizer's decode-encode loop has fixed points; codes read with the wrong levels
keep scattering). On the shipped bundle the third round trip gives back 62% of the ids with its
levels and at most 8% with any other order of them. Each graph is rewritten atomically.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np
import onnx
from oat_edge import manifest as mf
from oat_edge.atomic import atomic_path
from oat_edge.errors import BundleError

FSQ_KEY = "oat_edge.fsq_levels"
STAMPED = ("decoder", "encoder")  # the graphs whose numbers depend on the levels
ROUND_TRIPS = 3
MIN_ROUND_TRIP = 0.25  # the shipped bundle: 0.62 with its levels, <= 0.08 with them reordered


def levels_text(levels) -> str:
    return json.dumps([int(x) for x in levels])


def read_stamp(path):
    """The graph's `oat_edge.fsq_levels` as a list of ints, or None when absent."""
    m = onnx.load(path, load_external_data=False)
    for p in m.metadata_props:
        if p.key == FSQ_KEY:
            return json.loads(p.value)
    return None


def stamp_graph(path, levels) -> None:
    """Write (or replace) the property in the ONNX file at `path`, atomically."""
    m = onnx.load(path)
    props = [p for p in m.metadata_props if p.key != FSQ_KEY]
    del m.metadata_props[:]
    m.metadata_props.extend(props)
    m.metadata_props.add(key=FSQ_KEY, value=levels_text(levels))
    with atomic_path(path) as tmp:
        onnx.save(m, tmp)
        onnx.checker.check_model(tmp)


def stamp_files(bundle_dir, d) -> list[str]:
    """Stamp every graph of STAMPED the manifest `d` lists; returns the files written."""
    out = []
    for role in STAMPED:
        if role in d["files"]:
            stamp_graph(os.path.join(bundle_dir, d["files"][role]), d["tokenizer"]["fsq_levels"])
            out.append(d["files"][role])
    return out


def read_manifest(bundle_dir) -> dict:
    """The manifest in model.onnx, validated (fields and files), without running the graphs:
    the loader's own stamp check must not stop the tool that adds the stamp."""
    bundle_dir, entry = mf.entry_path(bundle_dir)
    props = {p.key: p.value for p in onnx.load(entry, load_external_data=False).metadata_props}
    if mf.MANIFEST_KEY not in props:
        raise BundleError(f"{entry} has no '{mf.MANIFEST_KEY}' metadata: not an oat_edge bundle")
    return mf.validate(mf.parse(props[mf.MANIFEST_KEY]), bundle_dir)


def _ids_to_codes(ids, levels):
    levels = np.asarray(levels, np.int64)
    basis = np.concatenate([[1], np.cumprod(levels[:-1])])
    half = levels // 2
    return (((ids[..., None] // basis) % levels - half) / half).astype(np.float32)


def verify_levels(bundle_dir, d, n=256, seed=0) -> dict:
    """Behavioural evidence that the graphs use the manifest's levels (see the module doc).
    Returns the figures; BundleError when the evidence contradicts the levels."""
    import onnxruntime as ort

    if "encoder" not in d["files"]:
        return {"checked": False, "why": "no encoder graph in the bundle"}
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.log_severity_level = 1, 3
    run = {r: ort.InferenceSession(os.path.join(bundle_dir, d["files"][r]), so, providers=["CPUExecutionProvider"])
           for r in ("encoder", "decoder")}
    t = d["tokenizer"]
    levels, K = t["fsq_levels"], t["num_tokens"]
    cb = math.prod(levels)
    rng = np.random.default_rng(seed)
    acts = rng.uniform(-1, 1, (n, t["horizon"], t["action_dim"])).astype(np.float32)
    ids = run["encoder"].run(None, {"actions": acts})[0]
    if ids.min() < 0 or ids.max() >= cb:
        raise BundleError(f"the encoder graph writes ids in [{ids.min()}, {ids.max()}], outside [0, {cb}) = "
                          f"[0, prod(tokenizer.fsq_levels {levels})): the manifest's levels are not the graphs'")
    max_id = int(ids.max())
    for _ in range(ROUND_TRIPS):  # decode the ids, encode the actions again: they settle on fixed points
        dec = run["decoder"].run(None, {"codes": _ids_to_codes(ids, levels), "num_tokens": np.full(n, K, np.int64)})[0]
        ids, prev = run["encoder"].run(None, {"actions": np.clip(dec, -1, 1).astype(np.float32)})[0], ids
    return {"checked": True, "ids_below": cb, "max_id": max_id, "round_trip_agreement": float(np.mean(ids == prev))}


def stamp_bundle(bundle_dir, force=False, min_round_trip=MIN_ROUND_TRIP) -> dict:
    """Verify and stamp one bundle directory. A stamp that differs from the manifest is refused
    unless `force` (the graphs and the manifest disagree: find out which is right first)."""
    d = read_manifest(bundle_dir)
    bundle_dir = mf.entry_path(bundle_dir)[0]
    levels = [int(x) for x in d["tokenizer"]["fsq_levels"]]
    for role in STAMPED:
        if role in d["files"]:
            old = read_stamp(os.path.join(bundle_dir, d["files"][role]))
            if old is not None and old != levels and not force:
                raise BundleError(f"{d['files'][role]} is stamped {FSQ_KEY}={old}, the manifest says "
                                  f"tokenizer.fsq_levels={levels}: the graphs and the manifest come from different "
                                  f"tokenizers; re-export the bundle (or pass --force to stamp the manifest's levels)")
    report = verify_levels(bundle_dir, d)
    if report["checked"] and report["round_trip_agreement"] < min_round_trip and not force:
        raise BundleError(f"decoding the encoder's ids with tokenizer.fsq_levels={levels} and encoding again "
                          f"({ROUND_TRIPS} times) gives back only {report['round_trip_agreement']:.0%} of them "
                          f"(expected >= "
                          f"{min_round_trip:.0%} for a trained tokenizer): the levels may not be the graphs'; "
                          f"pass --force to stamp them anyway (e.g. for random-weight test bundles)")
    report["levels"], report["stamped"] = levels, stamp_files(bundle_dir, d)
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="oat_export.stamp", description=f"write {FSQ_KEY} into a bundle's "
                                 "decoder and encoder graphs, from its manifest, after checking the levels")
    ap.add_argument("bundles", nargs="+", help="bundle directories (or their model.onnx)")
    ap.add_argument("--force", action="store_true", help="stamp even when the behavioural check or an "
                    "existing stamp disagrees")
    args = ap.parse_args(argv)
    rc = 0
    for b in args.bundles:
        try:
            r = stamp_bundle(b, force=args.force)
        except BundleError as exc:
            print(f"oat_export.stamp: error: {b}: {exc}", file=sys.stderr)
            rc = 2
            continue
        rt = f", round trip {r['round_trip_agreement']:.1%}" if r["checked"] else f" (unchecked: {r['why']})"
        print(f"{b}: stamped {FSQ_KEY}={levels_text(r['levels'])} into {', '.join(r['stamped'])}"
              + (f"; encoder ids <= {r['max_id']} < {r['ids_below']}" if r["checked"] else "") + rt)
    return rc


if __name__ == "__main__":
    sys.exit(main())
