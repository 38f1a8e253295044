"""FAST baseline policy: OAT's autoregressive transformer (ARPolicy, same sizes) over DCT+BPE
tokens (train/fast_tokenizer.py) instead of ordered tokens.

A chunk is a variable-length sequence: its BPE ids, then the end token (eos_id = vocab_size),
at most max_tokens + 1 positions in all. The policy's output vocabulary is the BPE vocabulary
plus the end token (codebook_size = vocab_size + 1; its BOS comes after that). Training is
teacher-forced cross-entropy up to and including the first end token; the padding after it
carries no loss. Generation stops at the end token or after max_tokens + 1 positions.

Unlike OAT, a generated sequence may not decode (it must expand to exactly H*D DCT symbols):
`predict` reports that per row and the runtime runner raises, so a control loop holds its last
safe action instead of executing the tokenizer's all-zero fallback.

    python -m oat_edge.baselines.fast_policy --demos runs/demos.npz --out runs/fast [--steps N]
"""
from __future__ import annotations

import argparse
import os
import secrets
from dataclasses import asdict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from oat_edge import sampling
from oat_edge.atomic import write_json
from oat_edge.baselines.train_flags import add_policy_flags
from oat_edge.train import distributed as D
from oat_edge.train.checkpoint import load_checkpoint, save_checkpoint
from oat_edge.train.dataset import DataConfig, load_dataset
from oat_edge.train.fast_tokenizer import FASTTokenizer
from oat_edge.train.normalizer import Normalizer
from oat_edge.train.policy import ARPolicy, PolicyConfig
from oat_edge.train.train_policy import RECIPE, param_groups

KIND = "fast_policy"
# Longest training sequence on the Meta-World recipe demos is 70 ids (DCT scale 10, vocab 1024);
# 80 leaves room without making every act pay for a long cache.
MAX_TOKENS = 80


def fast_targets(tok: FASTTokenizer, actions_raw) -> tuple[torch.Tensor, torch.Tensor, int]:
    """raw chunks [M, H, D] -> (ids [M, max_tokens+1] int64: tokens, end token, end-token
    padding; mask [M, max_tokens+1] bool: positions that carry loss; number of chunks whose
    tokenization was longer than max_tokens and got cut)."""
    full = tok.tokenize_full(actions_raw)
    L = tok.max_tokens + 1
    ids = np.full((len(full), L), tok.eos_id, dtype=np.int64)
    mask = np.zeros((len(full), L), dtype=bool)
    cut = 0
    for i, seq in enumerate(full):
        cut += len(seq) > tok.max_tokens
        seq = seq[: tok.max_tokens]
        ids[i, : len(seq)] = seq
        mask[i, : len(seq) + 1] = True  # the tokens and the end token after them
    return torch.from_numpy(ids), torch.from_numpy(mask), cut


def masked_loss(policy: ARPolicy, obs_norm, ids, mask):
    """Teacher-forced cross-entropy over the positions in `mask` (tokens + first end token)."""
    logits = policy(obs_norm, ids)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1), reduction="none")
    m = mask.reshape(-1).to(ce.dtype)
    loss = (ce * m).sum() / m.sum().clamp_min(1.0)
    with torch.no_grad():
        hit = (logits[..., : policy.cfg.codebook_size].argmax(-1) == ids).reshape(-1).to(ce.dtype)
        acc = (hit * m).sum() / m.sum().clamp_min(1.0)
    return loss, {"ce": loss.detach(), "acc": acc}


@torch.no_grad()
def generate_until_end(policy: ARPolicy, obs_norm, eos_id: int, temperature=1.0, top_k=10, seed=None):
    """KV-cached sampling that stops once every row has produced the end token.
    -> ids int64 [B, n] (n <= num_tokens; rows that ended earlier are padded with eos_id)."""
    c = policy.cfg
    rng = sampling.SplitMix64(secrets.randbits(64) if seed is None else seed)
    B, dev = obs_norm.shape[0], obs_norm.device
    mem_k, mem_v = policy.prefill(obs_norm)
    past_k, past_v = policy.empty_cache(B, dev)
    token = torch.full((B,), c.bos_id, dtype=torch.long, device=dev)
    ended = torch.zeros(B, dtype=torch.bool, device=dev)
    out = []
    for t in range(c.num_tokens):
        logits, nk, nv = policy.step(token, torch.tensor([t], device=dev), past_k, past_v, mem_k, mem_v)
        past_k[:, :, :, t:t + 1] = nk
        past_v[:, :, :, t:t + 1] = nv
        ids = torch.from_numpy(sampling.sample_batch(logits.float().cpu().numpy(), c.codebook_size,
                                                     temperature, top_k, rng)).to(dev)
        token = torch.where(ended, torch.full_like(ids, eos_id), ids)
        out.append(token)
        ended |= token == eos_id
        if bool(ended.all()):
            break
    return torch.stack(out, 1)


class FASTPolicy(nn.Module):
    """Fitted FAST tokenizer + AR policy + observation normalizer: raw obs in, raw actions out."""

    kind = KIND

    def __init__(self, tokenizer: FASTTokenizer, policy: ARPolicy, obs_normalizer: Normalizer):
        super().__init__()
        c = policy.cfg
        if c.codebook_size != tokenizer.vocab_size + 1 or c.num_tokens != tokenizer.max_tokens + 1:
            raise ValueError(
                f"policy.cfg: expected codebook_size={tokenizer.vocab_size + 1} (BPE vocabulary + end "
                f"token) and num_tokens={tokenizer.max_tokens + 1} (max_tokens + end token), got "
                f"{c.codebook_size} and {c.num_tokens}")
        if obs_normalizer.dim != c.obs_dim:
            raise ValueError(f"obs_normalizer.dim: expected obs_dim={c.obs_dim}, got {obs_normalizer.dim}")
        self.tokenizer, self.policy, self.obs_normalizer = tokenizer, policy, obs_normalizer

    @torch.no_grad()
    def predict(self, obs_raw, temperature=1.0, top_k=10, seed=None):
        """obs_raw [B, T, obs_dim] -> (raw actions [B, H, D], decoded ok [B], tokens [B] before
        the end token). Undecodable rows hold the tokenizer's all-zero fallback and ok=False."""
        obs = torch.as_tensor(np.asarray(obs_raw), dtype=torch.float32)
        self.policy.eval()
        ids = generate_until_end(self.policy, self.obs_normalizer.normalize(obs), self.tokenizer.eos_id,
                                 temperature, top_k, seed).cpu().numpy()
        n = np.array([int(np.argmax(r == self.tokenizer.eos_id)) if (r == self.tokenizer.eos_id).any()
                      else len(r) for r in ids])
        actions, ok = self.tokenizer.detokenize(ids)
        return actions, ok, n

    def checkpoint(self):
        return {"kind": KIND, "tokenizer": self.tokenizer.checkpoint(),
                "policy_config": asdict(self.policy.cfg), "policy_state": self.policy.state_dict(),
                "obs_normalizer": self.obs_normalizer.to_dict()}

    @classmethod
    def from_checkpoint(cls, ck):
        if ck.get("kind") != KIND:
            raise ValueError(f"checkpoint kind: expected {KIND!r}, got {ck.get('kind')!r}")
        pol = ARPolicy(PolicyConfig(**ck["policy_config"]))
        pol.load_state_dict(ck["policy_state"])
        return cls(FASTTokenizer.from_checkpoint(ck["tokenizer"]), pol,
                   Normalizer.from_dict(ck["obs_normalizer"]))

    @classmethod
    def load(cls, path):
        return cls.from_checkpoint(load_checkpoint(path))


def main(argv=None):
    p = argparse.ArgumentParser(description="train the FAST baseline policy (DCT+BPE tokens, AR)")
    add_policy_flags(p)
    p.add_argument("--vocab-size", type=int, default=1024, help="BPE vocabulary")
    p.add_argument("--dct-scale", type=float, default=10.0, help="DCT coefficient scale before rounding")
    p.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help="longest sequence (end token excluded)")
    D.add_run_flags(p)
    args = p.parse_args(argv)

    d = D.setup(args.device)
    train, val, info = load_dataset(args.demos, DataConfig(horizon=args.horizon, n_obs_steps=args.n_obs_steps,
                                                           val_fraction=args.val_fraction, seed=args.seed))
    tok = FASTTokenizer(info["action_dim"], args.horizon, scale=args.dct_scale, vocab_size=args.vocab_size,
                        max_tokens=args.max_tokens).fit(train.actions)
    obs_norm = Normalizer.fit(train.obs)
    y_train, m_train, cut = fast_targets(tok, train.actions)
    y_val, m_val, _ = fast_targets(tok, val.actions[:2048])
    lengths = m_train.sum(1) - 1
    if d.world > 1:
        keep = torch.arange(d.rank, len(train), d.world)
        train, y_train, m_train = train.subset(keep), y_train[keep], m_train[keep]
    x_train = obs_norm.normalize(train.obs).to(d.device)
    y_train, m_train = y_train.to(d.device), m_train.to(d.device)
    x_val = obs_norm.normalize(val.obs[:2048]).to(d.device)
    y_val, m_val = y_val.to(d.device), m_val.to(d.device)

    torch.manual_seed(args.seed)
    pcfg = PolicyConfig(obs_dim=info["obs_dim"], n_obs_steps=args.n_obs_steps,
                        codebook_size=tok.vocab_size + 1, num_tokens=tok.max_tokens + 1,
                        width=args.width, n_layers=args.layers, n_heads=args.heads,
                        dropout=args.dropout, n_action_steps=args.n_action_steps)
    policy = ARPolicy(pcfg)
    n_params = sum(q.numel() for q in policy.parameters())

    def loss_fn(model, idx):
        return masked_loss(model, x_train[idx], y_train[idx], m_train[idx])

    def eval_fn(ema_model):
        loss, inf = masked_loss(ema_model, x_val, y_val, m_val)
        return {"loss": float(loss), "acc": float(inf["acc"])}

    cfg = D.TrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, warmup=args.warmup,
                        ckpt_every=args.ckpt_every, eval_every=args.eval_every, log_every=args.log_every,
                        seed=args.seed, device=args.device, threads=args.threads,
                        progress=not args.no_progress)
    run_info = {"args": vars(args), "policy_config": asdict(pcfg), "params": n_params,
                "tokenizer_kind": "fast", "train_config": asdict(cfg),
                "tokens_per_chunk": {"mean": float(lengths.float().mean()), "max": int(lengths.max()),
                                     "cut_at_max_tokens": cut},
                "data": {k: v for k, v in info.items() if k not in ("train_episodes", "val_episodes")}}
    os.makedirs(args.out, exist_ok=True)
    ema = D.fit(policy, loss_fn, len(x_train), cfg, args.out, d,
                param_groups=param_groups(policy, RECIPE["obs_lr_scale"]), eval_fn=eval_fn,
                resume=args.resume, meta=run_info)
    if d.main:
        ck = FASTPolicy(tok, ema.model.cpu(), obs_norm).checkpoint()
        ck.update(tasks=info["tasks"], obs_layout=info["obs_layout"])
        save_checkpoint(ck, os.path.join(args.out, "policy.pt"))
        write_json(os.path.join(args.out, "config.json"), run_info, indent=1)
        print(f"wrote {args.out}/policy.pt ({n_params / 1e6:.2f} M params, {cut} of {len(lengths)} "
              f"training chunks longer than {tok.max_tokens} tokens)")
    D.teardown(d)


if __name__ == "__main__":
    main()
