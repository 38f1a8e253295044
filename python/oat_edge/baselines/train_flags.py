"""The training flags every baseline policy shares: the token policy recipe's budget and
transformer sizes by default, so each class is trained like OAT's policy unless told otherwise."""
from oat_edge.train.train_policy import RECIPE


def add_policy_flags(p) -> None:
    p.add_argument("--demos", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=RECIPE["steps"])
    p.add_argument("--batch", type=int, default=RECIPE["batch"])
    p.add_argument("--lr", type=float, default=RECIPE["lr"])
    p.add_argument("--warmup", type=int, default=RECIPE["warmup"])
    p.add_argument("--width", type=int, default=RECIPE["width"])
    p.add_argument("--layers", type=int, default=RECIPE["layers"])
    p.add_argument("--heads", type=int, default=RECIPE["heads"])
    p.add_argument("--dropout", type=float, default=RECIPE["dropout"])
    p.add_argument("--horizon", type=int, default=32)
    p.add_argument("--n-obs-steps", type=int, default=2)
    p.add_argument("--n-action-steps", type=int, default=8)
