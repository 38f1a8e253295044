"""Shared training loop + torch.distributed helpers (used by train_tokenizer / train_policy).

Single process:  python -m oat_edge.train.train_tokenizer ...
Data parallel:   torchrun --nproc_per_node 2 -m oat_edge.train.train_tokenizer ...
Under torchrun every rank holds the full (small) model, draws its own part of the global batch
from its own shard of the data, and gradients are averaged with one all-reduce per step (gloo on
CPU, nccl on CUDA). We all-reduce by hand instead of wrapping in DDP because the models are
trained through `.loss(...)`, not `forward`, which DDP's hooks would not see. Rank 0 logs,
evaluates and writes checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist

from oat_edge.atomic import write_text
from oat_edge.train.checkpoint import load_checkpoint, save_checkpoint
from oat_edge.train.dataset import DataConfig
from oat_edge.train.ema import EMA, EMAConfig


@dataclass
class TrainConfig:
    steps: int = 2000
    batch: int = 128            # global batch (split across ranks)
    lr: float = 1e-3
    schedule: str = "cosine"    # "cosine" (to min_lr_ratio * lr) | "constant"; both after warmup
    warmup: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ckpt_every: int = 500
    eval_every: int = 250
    log_every: int = 10
    seed: int = 0
    device: str = "cpu"
    threads: int = 0            # torch intra-op threads per process; 0 = leave torch's default
    progress: bool = True

    def __post_init__(self):
        for name in ("steps", "batch", "ckpt_every", "eval_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name}: expected >= 1, given {getattr(self, name)}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"TrainConfig.schedule: expected 'cosine' or 'constant', "
                             f"given {self.schedule!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr: expected > 0, given {self.lr}")


def add_run_flags(p) -> None:
    """The flags every training command shares: split, checkpoint/eval/log cadence, seed, device."""
    p.add_argument("--val-fraction", type=float, default=DataConfig.val_fraction,
                   help="held-out episodes per task")
    p.add_argument("--ckpt-every", type=int, default=TrainConfig.ckpt_every)
    p.add_argument("--eval-every", type=int, default=TrainConfig.eval_every)
    p.add_argument("--log-every", type=int, default=TrainConfig.log_every)
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--device", default=TrainConfig.device, help="cpu | cuda")
    p.add_argument("--threads", type=int, default=TrainConfig.threads,
                   help="torch threads (0 = all cores)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/ckpt.pt")
    p.add_argument("--force", action="store_true",
                   help="train from scratch into an --out that already holds a run")
    p.add_argument("--no-progress", action="store_true")


def discard_stale_result(path: str, d: Dist, resume: bool) -> None:
    """A run started afresh (--force) removes the result of the run it replaces first, so that
    an interrupted or failed run never leaves an old result that looks like its own."""
    if d.main and not resume and os.path.exists(path):
        os.remove(path)


def _step_of(line: str):
    """The step of one metrics.jsonl line; None for a blank or torn line."""
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return None


def check_out(args) -> None:
    """--out must be writable, and a finished or partial run there is only replaced with
    --force (or continued with --resume)."""
    from oat_edge.atomic import check_output_dir
    check_output_dir(args.out, force=args.force or args.resume)


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    lo = cfg.lr * cfg.min_lr_ratio
    return lo + 0.5 * (cfg.lr - lo) * (1 + math.cos(math.pi * min(t, 1.0)))


# ----------------------------------------------------------------------------- process group

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str = "cpu") -> Dist:
    """Init torch.distributed when launched by torchrun (WORLD_SIZE > 1), else single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: expected an available device, given {device!r} "
                         f"(torch.cuda.is_available() is False)")
    if world <= 1:
        return Dist(0, 1, torch.device(device))
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Dist(rank, world, dev)


def teardown(d: Dist):
    if d.world > 1 and dist.is_initialized():
        dist.barrier()
        # Gloo can std::terminate a rank whose peer closes its sockets while the last collective
        # is still draining (seen here as a rare SIGABRT at exit). A rendezvous through the
        # TCP store, which is not a gloo pair, makes sure every rank is past the barrier first.
        store = dist.distributed_c10d._get_default_store()
        store.add("oat_edge/teardown", 1)
        deadline = time.monotonic() + 60
        while store.add("oat_edge/teardown", 0) < d.world and time.monotonic() < deadline:
            time.sleep(0.01)
        dist.destroy_process_group()


def broadcast_model(model: torch.nn.Module, d: Dist):
    if d.world > 1:
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)


def allreduce_grads(params, d: Dist):
    """Average gradients over ranks with one flat all-reduce (missing grads count as zero)."""
    if d.world <= 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= d.world
    i = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[i:i + n].view_as(p).clone()
        i += n


def check_in_sync(model: torch.nn.Module, d: Dist, atol: float = 1e-5):
    """Raise if the ranks' weights diverged (a missed gradient all-reduce would do that)."""
    flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])
    lo, hi = flat.clone(), flat.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    gap = float((hi - lo).abs().max())
    if gap > atol:
        raise RuntimeError(f"ranks diverged: max weight difference {gap:.3g} > {atol}")


# ----------------------------------------------------------------------------- the loop

def _batch_index(n: int, batch: int, seed: int, rank: int, step: int, device) -> torch.Tensor:
    # indices depend only on (seed, rank, step): resuming reproduces the exact batches
    g = torch.Generator().manual_seed(hash((seed, rank, step)) & 0x7FFF_FFFF_FFFF)
    return torch.randint(0, n, (batch,), generator=g).to(device)


def _scalars(info: dict) -> dict:
    out = {}
    for k, v in info.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            out[k] = float(v)
        elif isinstance(v, (int, float)):
            out[k] = float(v)
    return out


def _restore(ckpt_path, model, ema, opt, cfg: TrainConfig, d: Dist) -> int:
    """Load a --resume checkpoint into model, EMA and optimizer; returns its step."""
    if not os.path.exists(ckpt_path):
        raise FileNotFoundError(f"--resume: expected a checkpoint at {ckpt_path}, found none")
    ck = load_checkpoint(ckpt_path, d.device, what="--resume checkpoint")
    model.load_state_dict(ck["model"])
    ema.load_state_dict(ck["ema"])
    opt.load_state_dict(ck["optimizer"])
    start = int(ck["step"])
    if d.main and "torch_rng" in ck:
        torch.set_rng_state(ck["torch_rng"].cpu())
    else:
        torch.manual_seed(cfg.seed + d.rank + 7919 * start)
    return start


def _trim_metrics(metrics_path: str, start: int) -> None:
    """Drop log lines written after the checkpoint (a crash between saves), and a last line cut
    short by the crash."""
    if os.path.exists(metrics_path):
        with open(metrics_path) as f:
            keep = [l for l in f if _step_of(l) is not None and _step_of(l) <= start]
        write_text(metrics_path, "".join(keep))


class _Recorder:
    """Rank 0's view of training: metrics.jsonl lines, evaluation, the progress bar."""

    def __init__(self, cfg: TrainConfig, out_dir: str, start: int, eval_fn):
        self.cfg, self.start, self.eval_fn, self.t0 = cfg, start, eval_fn, time.time()
        self.log = open(os.path.join(out_dir, "metrics.jsonl"), "a")
        self.bar = None
        if cfg.progress:
            from tqdm import tqdm
            self.bar = tqdm(total=cfg.steps, initial=start,
                            desc=os.path.basename(out_dir.rstrip("/")), dynamic_ncols=True,
                            mininterval=1.0,
                            disable=None)  # None: no bar when stderr is a log file

    def record(self, done, loss_val, lr, gn, info, model, ema) -> None:
        c, rec = self.cfg, None
        if done % c.log_every == 0 or done == c.steps or done == self.start + 1:
            rec = {"step": done, "loss": loss_val, "lr": lr, "grad_norm": float(gn),
                   "time": round(time.time() - self.t0, 3), **_scalars(info)}
        if self.eval_fn is not None and (done % c.eval_every == 0 or done == c.steps):
            rec = rec or {"step": done, "loss": loss_val, "lr": lr,
                          "time": round(time.time() - self.t0, 3)}
            model.eval()
            with torch.no_grad():
                rec.update({f"val_{k}": v for k, v in self.eval_fn(ema.model).items()})
            model.train()
        if rec is not None:
            self.log.write(json.dumps(rec) + "\n")
            self.log.flush()
        if self.bar is not None:
            self.bar.update(1)
            if rec is not None:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in rec.items()
                                      if k in ("loss", "lr", "val_mse", "val_loss")})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.log.close()


def _train_step(model, loss_fn, opt, params, idx, cfg: TrainConfig, d: Dist, step: int):
    """One optimizer step; returns (mean loss over ranks, grad norm, the loss's info)."""
    loss, info = loss_fn(model, idx)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss: expected a finite value, given {float(loss)} "
                                 f"at step {step}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    allreduce_grads(params, d)
    gn = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    opt.step()
    if d.world > 1:
        lt = loss.detach().clone()
        dist.all_reduce(lt)
        return float(lt) / d.world, gn, info
    return float(loss.detach()), gn, info


def fit(model, loss_fn, n_train: int, cfg: TrainConfig, out_dir: str, d: Dist, *,
        param_groups=None, eval_fn=None, resume: bool = False, meta: dict | None = None):
    """Train `model` with loss_fn(model, idx) -> (loss, info), idx = this rank's batch of
    sample indices into its data shard of size n_train. Returns the EMA.

    param_groups: optional list of {"params": [...], "lr_scale": float}.
    eval_fn(ema_model) -> dict of metrics, called on rank 0 every eval_every steps and at the end.
    Writes out_dir/ckpt.pt (model, EMA, optimizer, step, RNG) and out_dir/metrics.jsonl.
    Ctrl-C saves a checkpoint of the steps taken, so that --resume continues from there.
    """
    ckpt_path, metrics_path = _prepare_run(n_train, cfg, out_dir, d)

    model.to(d.device)
    broadcast_model(model, d)
    opt, params = _optimizer(model, param_groups, cfg)
    ema = EMA(model, EMAConfig())
    torch.manual_seed(cfg.seed + d.rank)
    start = _restore(ckpt_path, model, ema, opt, cfg, d) if resume else 0
    if d.main and resume:
        _trim_metrics(metrics_path, start)
    elif d.main and os.path.exists(metrics_path):
        os.remove(metrics_path)

    def save(step):
        if d.main:
            save_checkpoint({"model": model.state_dict(), "ema": ema.state_dict(),
                             "optimizer": opt.state_dict(), "step": step,
                             "torch_rng": torch.get_rng_state(), "train_config": asdict(cfg),
                             "meta": meta or {}}, ckpt_path)

    rec = _Recorder(cfg, out_dir, start, eval_fn) if d.main else None
    per_rank = cfg.batch // d.world
    t0, last, done = time.time(), None, start
    model.train()
    try:
        for step in range(start, cfg.steps):
            lr = lr_at(step, cfg)
            for g in opt.param_groups:
                g["lr"] = lr * g["lr_scale"]
            idx = _batch_index(n_train, per_rank, cfg.seed, d.rank, step, d.device)
            last, gn, info = _train_step(model, loss_fn, opt, params, idx, cfg, d, step)
            ema.update(model)
            done = step + 1
            if rec is not None:
                rec.record(done, last, lr, gn, info, model, ema)
            if done % cfg.ckpt_every == 0 or done == cfg.steps:
                save(done)
    except KeyboardInterrupt:
        if d.main and done > start:
            save(done)
            print(f"\n{out_dir}: interrupted at step {done}; saved {ckpt_path} "
                  f"(continue with --resume)", flush=True)
        raise
    finally:
        if rec is not None:
            rec.close()
    if d.world > 1:
        check_in_sync(model, d)
    if d.main and cfg.steps > start:
        _report_done(out_dir, cfg.steps - start, time.time() - t0, last, d.world)
    ema.model.to(d.device)
    return ema


def _prepare_run(n_train: int, cfg: TrainConfig, out_dir: str, d: Dist):
    """Checks that need the world size, the thread count, and the run's checkpoint/metrics paths."""
    if n_train < 1:
        raise ValueError("n_train: expected >= 1 training sample, given 0 (empty dataset)")
    if cfg.batch % d.world:
        raise ValueError(f"batch: expected a multiple of the world size {d.world}, given {cfg.batch}")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    os.makedirs(out_dir, exist_ok=True)
    return os.path.join(out_dir, "ckpt.pt"), os.path.join(out_dir, "metrics.jsonl")


def _optimizer(model, param_groups, cfg: TrainConfig):
    """AdamW over the given groups (each with an lr_scale, default 1) or every trainable weight."""
    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    for g in groups:
        g.setdefault("lr_scale", 1.0)
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    return opt, params


def _report_done(out_dir, steps, elapsed, last_loss, world):
    print(f"{out_dir}: {steps} steps in {elapsed:.1f} s ({steps / elapsed:.2f} steps/s), "
          f"final loss {last_loss:.5f}, world size {world}" + (", ranks in sync" if world > 1 else ""))
