"""Training stack (PyTorch). Import submodules explicitly, e.g.
`from oat_edge.train.tokenizer import OATTokenizer`; this file stays light on purpose."""
