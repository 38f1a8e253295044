"""How oat_edge measures a policy, in one place.

- `evaluate`: closed-loop Meta-World success vs number of tokens k (`oat-edge eval`).
- `bench`: act() latency, C++ runtime vs onnxruntime-Python vs PyTorch (`oat-edge bench`).
- `tokenizer_report`: a tokenizer's held-out reconstruction error vs prefix length
  (`python -m oat_edge.measure.tokenizer_report`).
- `decodability`: how many token sequences decode at all, OAT vs FAST
  (`python -m oat_edge.measure.decodability`).

Importing this package imports nothing heavy: `evaluate` and `bench` need only the runtime;
the last two need the training extra (torch).
"""
