"""An export that fails or is interrupted at any file it writes leaves the previous bundle intact."""
import os

import numpy as np
import oat_edge
import oat_edge.atomic as atomic
import pytest
import torch
from oat_edge.atomic import OutputError
from oat_edge.train.normalizer import Normalizer
from oat_edge.train.policy import ARPolicy, PolicyConfig, TokenPolicy
from oat_edge.train.tokenizer import OATConfig, OATTokenizer
from oat_export import export_bundle

torch.set_num_threads(1)


def _tiny_token_policy(seed=0):
    """A tiny model whose weights (and so actions) differ with the seed."""
    torch.manual_seed(seed)
    tok = OATTokenizer(OATConfig(action_dim=3, horizon=8, num_tokens=4, enc_width=16, enc_depth=1,
                                 enc_heads=2, dec_width=16, dec_depth=1, dec_heads=2, dec_ff=32))
    tok.set_normalizer(Normalizer.fit(torch.randn(50, 8, 3)))
    pol = ARPolicy(PolicyConfig(obs_dim=5, n_obs_steps=2, num_tokens=4, width=16, n_layers=1,
                                n_heads=2, n_action_steps=4))
    with torch.no_grad():
        for p in (*tok.parameters(), *pol.parameters()):
            p.normal_(0, 0.5)
    return TokenPolicy(tok, pol, Normalizer.fit(torch.randn(50, 2, 5))).eval()


class Fault(Exception):
    pass


class FaultInjector:
    """Counts every step that puts a file or directory in place (os.replace, os.rename, the
    directory exchange, the bytes written for JSON) and fails at the `fail_at`-th one."""

    def __init__(self, monkeypatch, fail_at=None, exc=Fault):
        self.n, self.fail_at, self.exc = 0, fail_at, exc
        for owner, name in ((os, "replace"), (os, "rename"), (atomic, "_exchange"),
                            (atomic, "_write_all")):
            monkeypatch.setattr(owner, name, self._wrap(getattr(owner, name)))

    def _wrap(self, fn):
        def counted(*a, **k):
            self.n += 1
            if self.n == self.fail_at:
                raise self.exc("injected fault")
            return fn(*a, **k)
        return counted


def _actions(bundle, obs):
    """Greedy actions of the C++ runtime: the bundle loads and acts."""
    return oat_edge.Policy(str(bundle)).act(obs, temperature=0.0)


@pytest.fixture(scope="module")
def old_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("atomic") / "bundle"
    export_bundle(_tiny_token_policy(seed=1), out, check_parity=False, variants=("fp16",))
    obs = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    return out, obs, _actions(out, obs), _actions(f"{out}_fp16", obs)


def _snapshot(d):
    return {f: open(os.path.join(d, f), "rb").read() for f in sorted(os.listdir(d))}


def test_export_interrupted_at_every_write_keeps_the_old_bundle(old_bundle, monkeypatch):
    out, obs, acts, acts16 = old_bundle
    before, before16 = _snapshot(out), _snapshot(f"{out}_fp16")
    new = _tiny_token_policy(seed=2)
    with monkeypatch.context() as m:  # count the writes of one full export
        probe = FaultInjector(m)
        export_bundle(new, out.parent / "probe", check_parity=False, variants=("fp16",))
    total = probe.n
    assert total >= 10  # 4 graphs + manifest, twice (fp32 and fp16), report, two swaps
    for n in range(1, total + 1):
        exc = KeyboardInterrupt if n % 3 == 0 else Fault  # Ctrl-C as well as an I/O error
        with monkeypatch.context() as m:
            FaultInjector(m, fail_at=n, exc=exc)
            with pytest.raises((Fault, KeyboardInterrupt, OutputError)):
                export_bundle(new, out, check_parity=False, variants=("fp16",))
        if n < total - 1:  # the two last steps are the swaps: before them nothing changed
            assert _snapshot(out) == before, f"bundle changed by a fault at write {n}"
            np.testing.assert_array_equal(_actions(out, obs), acts)
        # whatever the step, each bundle is whole: the old one or the new one, and it loads
        _actions(out, obs), _actions(f"{out}_fp16", obs)
        leftovers = [f for f in os.listdir(out.parent) if f.startswith(".")]
        assert leftovers == [], f"fault at write {n} left {leftovers}"
    assert _snapshot(f"{out}_fp16") in (before16, _snapshot(f"{out}_fp16"))


def test_export_failing_parity_does_not_replace_the_bundle(old_bundle, monkeypatch):
    out, obs, acts, _ = old_bundle
    before = _snapshot(out)
    import oat_export.export as ex
    monkeypatch.setattr(ex, "check_parity_fn", lambda tp, d: {"ok": False})
    rep = export_bundle(_tiny_token_policy(seed=3), out)
    assert rep["ok"] is False and rep["installed"] is False
    assert _snapshot(out) == before


def test_export_onto_a_file_fails_before_exporting(tmp_path):
    (tmp_path / "bundle").write_text("not a directory")
    with pytest.raises(OutputError, match="is a file, expected a directory"):
        export_bundle(_tiny_token_policy(), tmp_path / "bundle", check_parity=False)


def test_export_on_a_full_disk_is_one_line_and_keeps_the_old_bundle(old_bundle, monkeypatch):
    import errno
    out, obs, acts, _ = old_bundle
    before = _snapshot(out)
    real = os.replace

    def full(a, b):
        if str(b).endswith("model.onnx"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(a, b)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OutputError, match="no space left on device") as e:
        export_bundle(_tiny_token_policy(seed=4), out, check_parity=False)
    assert "\n" not in str(e.value)
    assert _snapshot(out) == before


def test_export_refuses_to_replace_a_directory_holding_other_files(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"not part of a bundle \(notes.txt\)"):
        export_bundle(_tiny_token_policy(), tmp_path / "runs", check_parity=False)
    assert (tmp_path / "runs" / "notes.txt").read_text() == "mine"
    assert os.listdir(tmp_path) == ["runs"]
