"""The comparison's report: the results table (markdown) and the success-vs-latency Pareto plot,
both made from compare.py's results dict."""
from __future__ import annotations


def _fmt_pct(x):
    return "–" if x is None else f"{100 * x:.0f}%"


def markdown(res: dict) -> str:
    tasks, ev, lat = res["tasks"], res["eval"], res["latency"]
    head = ("| policy | tokens / act | " + " | ".join(tasks) + " | **mean success** | act p50 / p99 ms "
            "| act() errors per episode (episodes with ≥ 1) |\n")
    head += "|---" * (len(tasks) + 5) + "|\n"
    lines = []
    for r in res["rows"]:
        lab = r["label"]
        e, l = ev.get(lab), lat.get(lab)
        tok = (l or {}).get("tokens_per_act") or (e or {}).get("tokens_per_act")
        if r["spec"].startswith("ddim"):
            tok_s = f"{r['spec'][4:]} denoiser runs"
        else:
            tok_s = "–" if tok is None else f"{tok:.1f}"
        if r["spec"].startswith("budget") and (e or {}).get("tokens_per_act") is not None:
            # a budget's token count depends on the machine's speed at that moment: the closed
            # loop's (its own worker processes) can differ from the latency run's
            tok_s += f" (closed loop {e['tokens_per_act']:.1f})"
        cells = [_fmt_pct(e["success"].get(t)) if e else "–" for t in tasks]
        mean = f"**{100 * e['mean_success']:.1f}%**" if e else "–"
        lat_s = f"{l['p50_ms']:.2f} / {l['p99_ms']:.2f}" if l else "–"
        err = f"{e['errors_per_episode']:.2f} ({100 * e['episodes_with_errors']:.0f}%)" if e else "–"
        lines.append(f"| {lab} | {tok_s} | " + " | ".join(cells) + f" | {mean} | {lat_s} | {err} |\n")
    for lab, l in lat.items():
        if lab not in ev and all(lab != r["label"] for r in res["rows"]):
            tok = "–" if l["tokens_per_act"] is None else f"{l['tokens_per_act']:.1f}"
            lines.append(f"| {lab} | {tok} | " + " | ".join("" for _ in tasks)
                         + f" | | {l['p50_ms']:.2f} / {l['p99_ms']:.2f} | |\n")
    note = (f"\n{res['episodes']} episodes per task and row (seed {res['seed']}, {res['hz']:g} Hz virtual clock, "
            f"inference latency measured for real). Latency: batch 1, one ORT thread, {res['rounds']} interleaved "
            f"rounds on held-out demo observations.\n")
    return head + "".join(lines) + note


def pareto_plot(res: dict, path: str) -> None:
    import matplotlib

    from .compare import is_oat_bundle  # the reference is drawn apart from the baselines
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts = []
    for r in res["rows"]:
        e, l = res["eval"].get(r["label"]), res["latency"].get(r["label"])
        if not e or not l:
            continue
        pts.append((l["p50_ms"], 100 * e["mean_success"]))
        color = "C0" if is_oat_bundle(r["path"]) and r["name"] == res["rows"][0]["name"] else "C1"
        ax.plot([l["p50_ms"], l["p99_ms"]], [pts[-1][1]] * 2, "-", color=color, alpha=0.4, lw=2)
        ax.plot(l["p50_ms"], pts[-1][1], "o", color=color)
        ax.annotate(r["label"], (l["p50_ms"], pts[-1][1]), textcoords="offset points",
                    xytext=(5, 4 if len(pts) % 2 else -11), fontsize=7)  # alternate: neighbours overlap
    front, best = [], -1.0
    for x, y in sorted(pts):
        if y > best:
            front.append((x, y))
            best = y
    if front:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="gray", ls="--", lw=1,
                label="Pareto front (p50)")
    ax.set(xscale="log", xlabel="act() latency, ms (dot p50, bar to p99; batch 1, 1 thread)",
           ylabel="mean closed-loop success %", ylim=(-2, 102), title="Success vs latency (Meta-World, 3 tasks)")
    import math

    from matplotlib.ticker import FuncFormatter
    lo, hi = ax.get_xlim()
    wide = hi / lo > 10  # over a decade, label the minor ticks 2, 3 and 5 of each decade only

    def minor(x, _):
        lead = round(x / 10 ** math.floor(math.log10(x) + 1e-9))
        return f"{x:g}" if not wide or lead in (2, 3, 5) else ""
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))  # 2, not 2×10^0
    ax.xaxis.set_minor_formatter(FuncFormatter(minor))
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    from oat_edge.atomic import atomic_path
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


# ----------------------------------------------------------------------------------- main
