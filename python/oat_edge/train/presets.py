"""Named model and training sizes for `train-tokenizer` and `train-policy` (`--preset`).

The defaults themselves live in the config dataclasses (`OATConfig`, `PolicyConfig`,
`TokenizerTrainConfig`, `PolicyTrainConfig`) and are the `cpu` preset: what scripts/recipe.sh
trains on a 2-core CPU in about 25 minutes (docs/DATA.md §4 has the probes behind them). A preset
other than `cpu` names only the fields it changes. Every flag left out on the command line takes
the preset's value; a flag given explicitly wins.
"""

from __future__ import annotations

import dataclasses

# preset -> config class name -> field overrides
PRESETS: dict[str, dict[str, dict]] = {
    "cpu": {},
    # The OAT paper's reference sizes: ~1.6 M encoder, ~4.2 M decoder, ~5 M AR policy.
    "paper": {
        "OATConfig": dict(enc_width=256, dec_width=256, enc_depth=2, dec_depth=4, dec_ff=1024,
                          dropout=0.1, keep_k="pow2"),
        "TokenizerTrainConfig": dict(lr=5e-5, batch=256),
        "PolicyConfig": dict(width=256, n_action_steps=16),
        "PolicyTrainConfig": dict(lr=5e-5, batch=256, obs_lr_scale=0.2),  # obs encoder at 1e-5
    },
}


def value(preset: str, cls, field: str):
    """The preset's value of `cls.field`, else the dataclass default."""
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, given {preset!r}")
    over = PRESETS[preset].get(cls.__name__, {})
    if field in over:
        return over[field]
    f = {f.name: f for f in dataclasses.fields(cls)}[field]
    if f.default is dataclasses.MISSING:
        raise ValueError(f"{cls.__name__}.{field} has no default")
    return f.default


def add_preset_flag(parser) -> None:
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS),
                        help="model and training sizes: cpu (default, the CPU recipe) or paper "
                             "(the paper's reference sizes); explicit flags override it")


def apply_preset(args, flags: dict) -> None:
    """flags: argparse dest -> (config class, field, ...). Fill each flag left at None."""
    for dest, (cls, field, *_) in flags.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value(args.preset, cls, field))


def default_help(cls, field: str, what: str) -> str:
    """'what (default: cpu 96, paper 256)', or 'what (default 32)' where the presets agree."""
    vals = {p: value(p, cls, field) for p in PRESETS}
    if len(set(map(repr, vals.values()))) == 1:
        return f"{what} (default {next(iter(vals.values()))})"
    return f"{what} (default: " + ", ".join(f"{p} {v}" for p, v in vals.items()) + ")"
