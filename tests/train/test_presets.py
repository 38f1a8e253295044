"""Model and recipe defaults have one source: the config dataclasses, with named presets."""
import pytest
from oat_edge.train.policy import PolicyConfig
from oat_edge.train.presets import PRESETS, value
from oat_edge.train.tokenizer import OATConfig
from oat_edge.train.train_policy import PolicyTrainConfig
from oat_edge.train.train_policy import parse_args as policy_args
from oat_edge.train.train_tokenizer import TokenizerTrainConfig
from oat_edge.train.train_tokenizer import parse_args as tokenizer_args

TOK = ["--demos", "d.npz", "--out", "o"]
POL = TOK + ["--tokenizer", "t.pt"]


def test_flags_left_out_take_the_config_dataclass_defaults():
    a = tokenizer_args(TOK)
    assert (a.width, a.enc_depth, a.dec_depth, a.heads, a.dropout, a.keep_k) == (
        OATConfig.enc_width, OATConfig.enc_depth, OATConfig.dec_depth, OATConfig.enc_heads,
        OATConfig.dropout, OATConfig.keep_k)
    assert (a.steps, a.batch, a.lr, a.warmup) == (
        TokenizerTrainConfig.steps, TokenizerTrainConfig.batch, TokenizerTrainConfig.lr,
        TokenizerTrainConfig.warmup)
    b = policy_args(POL)
    assert (b.width, b.layers, b.heads, b.n_action_steps) == (
        PolicyConfig.width, PolicyConfig.n_layers, PolicyConfig.n_heads,
        PolicyConfig.n_action_steps)
    assert (b.steps, b.batch, b.lr) == (PolicyTrainConfig.steps, PolicyTrainConfig.batch,
                                        PolicyTrainConfig.lr)


def test_cpu_defaults_are_the_recipes_sizes():
    # what scripts/recipe.sh trains (it passes no size flag) and models/ was trained with
    assert (OATConfig.enc_width, OATConfig.dec_depth, OATConfig.keep_k) == (96, 2, "uniform-full")
    assert (PolicyConfig.width, PolicyConfig.n_layers, PolicyConfig.n_action_steps) == (128, 4, 8)
    assert (TokenizerTrainConfig.steps, PolicyTrainConfig.steps) == (6000, 5000)


def test_paper_preset_sets_the_reference_sizes_and_flags_still_win():
    a = tokenizer_args(TOK + ["--preset", "paper"])
    assert (a.width, a.enc_depth, a.dec_depth, a.keep_k, a.lr, a.batch) == (
        256, 2, 4, "pow2", 5e-5, 256)
    b = policy_args(POL + ["--preset", "paper", "--batch", "32"])
    assert (b.width, b.n_action_steps, b.lr, b.batch, b.obs_lr_scale) == (256, 16, 5e-5, 32, 0.2)


def test_unknown_preset_is_rejected():
    with pytest.raises(SystemExit):
        tokenizer_args(TOK + ["--preset", "gpu"])
    with pytest.raises(ValueError, match="preset: expected one of"):
        value("gpu", OATConfig, "enc_width")
    assert set(PRESETS) == {"cpu", "paper"}
