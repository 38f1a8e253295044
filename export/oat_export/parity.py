"""PyTorch vs onnxruntime parity, and fp16/int8 variant error vs fp32.

The onnxruntime side is oat_edge.ort_reference.OrtBundle, the numpy reference of the C++ loop.
"""
import numpy as np
import torch
from oat_edge.ort_reference import OrtBundle, fsq_ids_to_codes


def _rel(a, b):
    """max |a - b| relative to the reference tensor's scale."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-6))


def random_obs_norm(cfg, B, g):
    return torch.rand(B, cfg.n_obs_steps, cfg.obs_dim, generator=g) * 2 - 1


@torch.no_grad()
def check_parity(token_policy, out_dir, batch=3, seed=0, rtol=1e-4, atol_actions=1e-4):
    """PyTorch vs onnxruntime on random inputs. Returns a dict with "ok" and the numbers."""
    tp = token_policy.cpu().eval()
    pol, tok, c = tp.policy, tp.tokenizer, tp.policy.cfg
    ob = OrtBundle(out_dir)
    g = torch.Generator().manual_seed(seed)
    B, K = batch, c.num_tokens
    obs = random_obs_norm(c, B, g)
    r = {}
    # prefill
    mk_t, mv_t = pol.prefill(obs)
    mk_o, mv_o = ob.prefill(obs.numpy())
    r["prefill_rel_err"] = max(_rel(mk_o, mk_t), _rel(mv_o, mv_t))
    # one step at a middle position with a random (partly garbage) cache: slots >= t must be ignored
    t = K // 2
    pk, pv = torch.randn(2, c.n_layers, B, c.n_heads, K, c.head_dim, generator=g)
    token = torch.randint(0, c.codebook_size, (B,), generator=g)
    lt, nkt, nvt = pol.step(token, torch.tensor([t]), pk, pv, mk_t, mv_t)
    lo, nko, nvo = ob.step(token.numpy(), t, pk.numpy(), pv.numpy(), mk_t.numpy(), mv_t.numpy())
    r["step_logits_rel_err"] = _rel(lo, lt)
    r["step_kv_rel_err"] = max(_rel(nko, nkt), _rel(nvo, nvt))
    # full greedy generate: identical tokens, logits within rtol
    ids_t = pol.generate(obs, temperature=0.0)
    ids_o, logits_o = ob.generate_norm(obs.numpy(), temperature=0.0, return_logits=True)
    r["greedy_tokens_equal"] = bool(np.array_equal(ids_t.numpy(), ids_o))
    full_logits = pol(obs, ids_t)  # teacher-forced logits for the same tokens
    r["generate_logits_rel_err"] = _rel(logits_o, full_logits)
    # seeded sampling (informative: near-ties may legitimately flip a draw)
    r["sampled_tokens_equal"] = bool(np.array_equal(pol.generate(obs, seed=123).numpy(),
                                                    ob.generate_norm(obs.numpy(), seed=123)))
    # decoder on random ids with every prefix length
    ids = torch.randint(0, tok.codebook_size, (B * K, K), generator=g)
    ks = torch.arange(B * K) % K + 1
    codes = tok.fsq.ids_to_codes(ids)
    a_t = tok.decoder(codes, ks)
    a_o = ob.decode(codes.numpy(), ks.numpy())
    r["decoder_max_abs_err"] = float(np.max(np.abs(a_o - a_t.numpy())))
    # numpy FSQ lookup == torch FSQ lookup
    r["fsq_lookup_equal"] = bool(np.array_equal(fsq_ids_to_codes(ids.numpy(), ob.levels), codes.numpy()))
    # encoder ids
    acts = torch.rand(B, tok.horizon, tok.action_dim, generator=g) * 2 - 1
    r["encoder_ids_match_frac"] = float(np.mean(ob.encode(acts.numpy()) == tok.encode(acts)[1].numpy()))
    # end to end: raw obs -> raw actions
    obs_raw = tp.obs_normalizer.unnormalize(obs)
    act_t = tp.predict(obs_raw, temperature=0.0).numpy()
    act_o = ob.act(obs_raw.numpy(), temperature=0.0)
    r["act_max_abs_err_norm"] = float(np.max(np.abs((act_o - act_t) * ob.act_scale)))
    r["ok"] = bool(r["prefill_rel_err"] <= rtol and r["step_logits_rel_err"] <= rtol and r["step_kv_rel_err"] <= rtol
                   and r["greedy_tokens_equal"] and r["generate_logits_rel_err"] <= rtol
                   and r["decoder_max_abs_err"] <= atol_actions and r["fsq_lookup_equal"]
                   and r["encoder_ids_match_frac"] >= 0.99 and r["act_max_abs_err_norm"] <= atol_actions)
    return r


@torch.no_grad()
def variant_error(token_policy, ref_dir, var_dir, batch=8, seed=0):
    """Measured error of a converted (fp16/int8) bundle vs the fp32 bundle."""
    c = token_policy.policy.cfg
    ref, var = OrtBundle(ref_dir), OrtBundle(var_dir)
    g = torch.Generator().manual_seed(seed)
    obs = random_obs_norm(c, batch, g).numpy()
    ids_r, lg_r = ref.generate_norm(obs, temperature=0.0, return_logits=True)
    ids_v, _ = var.generate_norm(obs, temperature=0.0, return_logits=True)
    # same inputs through the step graph, so logits are comparable even when tokens diverge
    mk, mv = ref.prefill(obs)
    pk = np.zeros((c.n_layers, batch, c.n_heads, c.num_tokens, c.head_dim), np.float32)
    tok = np.full(batch, c.codebook_size, np.int64)
    lr = ref.step(tok, 0, pk, pk, mk, mv)[0]
    lv = var.step(tok, 0, pk, pk, *var.prefill(obs))[0]
    a_r = ref.detokenize(ids_r)
    codes = fsq_ids_to_codes(ids_r, ref.levels)
    k = np.full(batch, c.num_tokens, np.int64)
    span = np.float32(1.0) / ref.act_scale  # half of the action range (normalized [-1,1] -> raw)
    return {
        "greedy_token_agreement": float(np.mean(ids_r == ids_v)),
        "step0_logits_rel_err": _rel(lv, lr),
        "decoder_max_abs_err_norm": float(np.max(np.abs(var.decode(codes, k) - ref.decode(codes, k)))),
        "greedy_action_max_abs_err": float(np.max(np.abs(var.detokenize(ids_v) - a_r))),
        "greedy_action_rmse": float(np.sqrt(np.mean((var.detokenize(ids_v) - a_r) ** 2))),
        "action_half_range": [float(x) for x in np.atleast_1d(span)],
    }
