"""Lower bounds: graph costs counted from the ONNX graphs, rates measured, one act()'s bound."""
import pytest
from oat_edge.measure import roofline


def test_step_graph_flops_and_weight_bytes_match_the_policy_config(tiny_bundle, tiny_token_policy):
    c = tiny_token_policy.policy.cfg
    w, K, T = c.width, c.num_tokens, c.n_obs_steps
    # per layer: qkv, proj1, q, proj2, the MLP, attention over K+1 slots and over T memory steps
    macs = c.n_layers * (3 * w * w + 3 * w * w + 2 * c.mlp_ratio * w * w + 2 * (K + 1) * w + 2 * T * w)
    macs += w * c.vocab_size  # tied head
    cost = roofline.bundle_costs(tiny_bundle)["step"]
    assert cost["flops"] == 2 * macs
    # every Linear's weights are read whole; of the positional table only the row looked up
    params = sum(p.numel() for n, p in tiny_token_policy.policy.named_parameters()
                 if not n.startswith(("obs_", "pos_emb")) and ".kv." not in n)
    assert cost["weight_bytes"] == pytest.approx(4 * (params + w), rel=0.01)


def test_decoder_and_prefill_costs_are_counted_at_batch_one(tiny_bundle):
    costs = roofline.bundle_costs(tiny_bundle)
    assert set(costs) == {"prefill", "step", "decoder"}
    for c in costs.values():
        assert c["flops"] > 0 and c["weight_bytes"] > 0 and c["nodes"] > 0


def test_act_bound_is_prefill_plus_k_steps_plus_decoder_each_at_its_roofline():
    costs = {"prefill": {"weight_bytes": 2e9, "flops": 1e9}, "step": {"weight_bytes": 1e9, "flops": 4e9},
             "decoder": {"weight_bytes": 0, "flops": 10e9}}
    rates = roofline.Rates(threads=1, llc_bytes=1, dram_bytes=1, gemv_dram_gbs=1.0,
                           gemv_gbs={"prefill": 1.0, "step": 2.0, "decoder": 1.0}, weight_bytes={},
                           sgemm_gflops=2.0)
    b = roofline.act_bound_ms(costs, rates, k=3)
    # prefill memory-bound 2 s; step compute-bound 2 s (memory 0.5 s) x 3; decoder compute 5 s
    assert b["prefill_ms"] == 2000 and b["step_ms"] == 6000 and b["decoder_ms"] == 5000
    assert b["ms"] == 13000 and b["memory_ms"] == 2000 + 1500 and b["compute_ms"] == 500 + 6000 + 5000


def test_measured_rates_cover_every_graph(tiny_bundle):
    costs = roofline.bundle_costs(tiny_bundle)
    r = roofline.measure_rates(costs)
    assert set(r.gemv_gbs) == set(costs) and all(v > 0 for v in r.gemv_gbs.values())
    assert r.sgemm_gflops > 0 and r.gemv_dram_gbs > 0 and r.dram_bytes >= 2 * r.llc_bytes
    assert "SGEMM" in roofline.describe(costs, r)
