"""The evaluation's report, made from evaluate()'s results dict: the Markdown table and the
plots (success vs k, latency vs k, rate-distortion), each written atomically."""

from __future__ import annotations

import os

import numpy as np

from ..atomic import atomic_path


def markdown_table(res: dict) -> str:
    """The results as a Markdown table; a cell an interrupted run did not reach shows '–'."""
    ks, tasks, expert = res["ks"], res["tasks"], bool(res["expert"])
    cell = {(t, k): res["per_task"][t].get(str(k)) for t in tasks for k in ks}

    def row(label, values, tail="–"):
        return f"| {label} | " + " | ".join(values) + (f" | {tail} |\n" if expert else " |\n")

    head = "| task | " + " | ".join(f"k={k} ({res['bits'][str(k)]:.0f} bit)" for k in ks)
    head += " | expert |\n" if expert else " |\n"
    sep = "|---" * (len(ks) + 1 + expert) + "|\n"
    rows = []
    for t in tasks:
        e = res["expert"].get(t)
        rows.append(row(t, [f"{100 * c['success_rate']:.0f}%" if c else "–"
                            for c in (cell[t, k] for k in ks)],
                        f"{100 * e:.0f}%" if e is not None else "–"))
    ms = res["mean_success"]
    rows.append(row("mean", [f"**{100 * ms[str(k)]:.1f}%**" if str(k) in ms else "–" for k in ks],
                    f"**{100 * res['expert_mean']:.1f}%**" if "expert_mean" in res else "–"))
    lat = []
    for k in ks:
        ps = [c["latency_ms"] for c in (cell[t, k] for t in tasks) if c and c["latency_ms"]]
        lat.append(f"{np.median([p['p50'] for p in ps]):.1f} / {max(p['p99'] for p in ps):.1f}"
                   if ps else "–")
    rows.append(row("act ms p50 / p99", lat))
    rows.append(row("overruns", [str(sum(c["overruns"] for c in (cell[t, k] for t in tasks) if c))
                                 for k in ks]))
    note = (f"\n{res['episodes']} episodes per cell, seed {res['seed']}, {res['hz']:g} Hz "
            f"virtual clock, latency budget {res['latency_budget_ms']} ms"
            + (f", temperature {res['temperature']:g}" if res.get("temperature") is not None else "")
            + ".\n")
    if res.get("interrupted"):
        note += ("Interrupted: only the episodes that had finished are counted (see "
                 "episodes_done per cell in results.json).\n")
    return head + sep + "".join(rows) + note + _camera_note(res, [c for c in cell.values() if c])


def _camera_note(res: dict, cells: list) -> str:
    """What a camera bundle saw, and how many of the steps' frames were drawn."""
    spec = res.get("observation")
    if not spec:
        return ""
    cams = [i for i in spec["inputs"] if i["name"].startswith("observation.images.")]
    h, w = cams[0]["shape"][:2]
    seen = ", ".join(i["name"].rsplit(".", 1)[-1] for i in cams)
    drawn = sum(c.get("frames_rendered", 0) for c in cells)
    steps = drawn + sum(c.get("frames_skipped", 0) for c in cells)
    share = f"; frames drawn for {100 * drawn / steps:.0f}% of the steps (those a replan reads)" if steps else ""
    return f"Camera bundle: {seen} at {h}x{w}, {spec['n_obs_steps']} steps of history{share}.\n"


def _save(fig, path: str) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")


def write_plots(res: dict, out_dir: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks, tasks = res["ks"], res["tasks"]
    sr = {t: [100 * res["per_task"][t][str(k)]["success_rate"] for k in ks] for t in tasks}
    mean = [100 * res["mean_success"][str(k)] for k in ks]

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for t in tasks:
        ax.plot(ks, sr[t], "o-", alpha=0.6, label=t)
    ax.plot(ks, mean, "ks-", lw=2, label="mean")
    if res["expert"]:
        ax.axhline(100 * res["expert_mean"], color="gray", ls="--", label="expert (mean)")
    ax.set(xscale="log", xlabel="tokens k", ylabel="success %", ylim=(-2, 102),
           title="Success vs prefix length")
    ax.minorticks_off()  # log axis: label only the evaluated k, no 3x10^0 minor labels
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.legend(fontsize=7)
    _save(fig, os.path.join(out_dir, "success_vs_k.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for q, style in (("p50", "o-"), ("p99", "s--")):
        vals = [np.median([res["per_task"][t][str(k)]["latency_ms"].get(q, np.nan)
                           for t in tasks]) for k in ks]
        ax.plot(ks, vals, style, label=q)
    if res.get("latency_budget_ms"):
        ax.axhline(res["latency_budget_ms"], color="red", ls=":", label="budget")
    ax.axhline(1e3 / res["hz"], color="gray", ls="--", label="control period")
    ax.set(xticks=ks, xlabel="tokens k", ylabel="act latency (ms)", title="Latency vs k")
    ax.legend(fontsize=7)
    _save(fig, os.path.join(out_dir, "latency_vs_k.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    bits = [res["bits"][str(k)] for k in ks]
    ax.plot(bits, mean, "ks-")
    for b, m, k in zip(bits, mean, ks):
        ax.annotate(f"k={k}", (b, m), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set(xlabel=f"bits per chunk (k·log2 {res['codebook_size']})", ylabel="mean success %",
           ylim=(-2, 102), title="Rate–distortion")
    _save(fig, os.path.join(out_dir, "rate_distortion.png"))
    plt.close(fig)
