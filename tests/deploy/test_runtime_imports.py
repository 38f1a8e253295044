"""What a robot runs never imports the training stack: `import oat_edge`, Policy(...).act and
`oat-edge doctor` load no torch, onnx or simulator (checked in a fresh interpreter, where this
dev environment has them all installed and one stray import would load them)."""

import json
import subprocess
import sys

TRAINING_MODULES = ("torch", "onnx", "onnxscript", "metaworld", "gymnasium", "matplotlib", "oat_export")

CHILD = """
import json, sys
import numpy as np
import oat_edge
from oat_edge.cli import main
p = oat_edge.Policy(sys.argv[1])
chunk = p.act(np.zeros((p.info.n_obs_steps, p.info.obs_dim), np.float32), max_tokens=2)
rc = main(["doctor", sys.argv[1], "--iters", "3", "--hz", "1", "--json"])
print(json.dumps({"shape": list(chunk.shape), "doctor_rc": rc,
                  "loaded": sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[2:]))}))
"""


def test_policy_act_and_doctor_import_no_training_module(tiny_bundle, child_env):
    res = subprocess.run([sys.executable, "-c", CHILD, tiny_bundle, *TRAINING_MODULES], capture_output=True,
                         text=True, env=child_env, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["loaded"] == [] and len(out["shape"]) == 2 and out["doctor_rc"] in (0, 1)
