"""Baseline policy classes for the closed-loop comparison with OAT.

Training side (torch): `fast_policy` (autoregressive over DCT+BPE tokens, variable length, end
token), `diffusion_policy` (continuous action chunks, DDPM training, DDIM inference); Bin,
OATX and OAT without causal registers are trained by the ordinary tokenizer/policy commands.
Runtime side (numpy + onnxruntime): `runners` gives every exported baseline the same `act()`
interface as `oat_edge.Policy`, so the same evaluation code runs all of them; `compare` builds
the success/latency table and the Pareto plot.
"""
