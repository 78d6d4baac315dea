"""Checkpoints survive any kill and resume exactly: kills mid-epoch, just after validation and during a save (a real
SIGKILL of a child process, with ``TMPDIR`` on another directory) each resume to the uninterrupted run's final weights
and best model; a damaged ``last.ckpt`` is named and its previous good copy offered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from faceage.models.files import CheckpointError, load_checkpoint_file, previous_checkpoint
from faceage.training.callbacks import SafeCheckpointIO

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 48 generated faces -> 38 train -> 3 batches of 16 per epoch; saving every 3 steps makes the step save coincide
# with every epoch end (the case where Lightning used to keep only the pre-validation state)
EVERY = 3
EPOCHS = 2


class Killed(Exception):
    pass


FIT = textwrap.dedent('''
    def fit(root, out, max_epochs, every, kill=None, ckpt_path=None):
        """A seeded tiny fit; ``kill`` is ``(hook, global_step)``: raise at that hook once ``global_step`` is reached."""
        import lightning as L
        from faceage.data.datamodule import AgeDataModule, SplitConfig
        from faceage.data.transforms import AugmentConfig
        from faceage.training.module import AgeModule, BackboneConfig, HeadConfig, OptimConfig

        class Kill(L.Callback):
            def _maybe(self, hook, trainer):
                if kill is not None and kill[0] == hook and trainer.global_step == kill[1]:
                    raise Killed(f"killed at {hook}, step {trainer.global_step}")

            def on_train_batch_start(self, trainer, *args):
                self._maybe("train_batch_start", trainer)

            def on_validation_end(self, trainer, *args):
                self._maybe("validation_end", trainer)

        L.seed_everything(0)
        module = AgeModule(BackboneConfig(name="resnet18", image_size=32, dropout=0.1), HeadConfig(name="coral"), OptimConfig(lr=0.01),
                           checkpoint_every_n_steps=every, early_stopping_patience=0)
        data = AgeDataModule("utkface", str(root), split=SplitConfig(seed=0), batch_size=16, num_workers=0, augment=AugmentConfig(),
                             split_file=str(out / "split.json"))
        trainer = L.Trainer(max_epochs=max_epochs, default_root_dir=str(out), callbacks=[Kill()], enable_progress_bar=False,
                            enable_model_summary=False, use_distributed_sampler=False, logger=False, deterministic=True,
                            num_sanity_val_steps=0)
        trainer.fit(module, data, ckpt_path=ckpt_path)
        return module, trainer
''')
exec(FIT)  # defines fit(); the same source runs in the killed child process


def outcome(module, trainer) -> dict:
    cb = trainer.checkpoint_callback
    best = torch.load(cb.best_model_path, weights_only=True)["state_dict"]
    return {"weights": module.state_dict(), "best_name": Path(cb.best_model_path).name, "best_score": float(cb.best_model_score),
            "best_weights": best, "step": trainer.global_step}


def assert_same(reference: dict, resumed: dict) -> None:
    assert resumed["step"] == reference["step"] == EVERY * EPOCHS
    for kind in ("weights", "best_weights"):
        differ = [k for k, v in reference[kind].items() if not torch.equal(v, resumed[kind][k])]
        assert not differ, f"{len(differ)}/{len(reference[kind])} {kind} tensors differ after resume"
    assert (resumed["best_name"], resumed["best_score"]) == (reference["best_name"], reference["best_score"])


@pytest.fixture(scope="module")
def utk(tmp_path_factory):
    import importlib.util

    spec = importlib.util.spec_from_file_location("faceage_tests_conftest", Path(__file__).parents[1] / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    return conftest.write_utkface_tree(tmp_path_factory.mktemp("utk") / "utk", n=48)


@pytest.fixture(scope="module")
def reference(utk, tmp_path_factory):
    torch.set_num_threads(1)
    return outcome(*fit(utk, tmp_path_factory.mktemp("ref"), EPOCHS, EVERY))


@pytest.mark.parametrize("kill", [("train_batch_start", 4), ("validation_end", 6)], ids=["mid-epoch", "after-validation"])
def test_kill_then_resume_is_exact(utk, reference, tmp_path, kill):
    # mid-epoch 1: the last save is the end of epoch 0, after its validation (it used to be the step-3 save from
    # before validation, so the resumed run forgot epoch 0's score and best checkpoint); after validation of epoch 1,
    # before its epoch-end save: the resume redoes epoch 1 from the end of epoch 0. Both resume from an epoch end,
    # where Lightning restores no loader state (the loader used to replay epoch 0's order)
    with pytest.raises(Killed):
        fit(utk, tmp_path, EPOCHS, EVERY, kill=kill)
    last = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["global_step"] == EVERY
    assert ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"] % EVERY == 0  # an epoch end
    assert_same(reference, outcome(*fit(utk, tmp_path, EPOCHS, EVERY, ckpt_path=str(last))))


def test_sigkill_during_save_keeps_the_good_checkpoint(utk, reference, tmp_path):
    run, tmpdir = tmp_path / "run", tmp_path / "elsewhere"
    tmpdir.mkdir()
    # the child dies (SIGKILL, no clean-up) half-way through writing its 3rd checkpoint (at the end of epoch 1,
    # after best-00 and the first last.ckpt)
    child = FIT + textwrap.dedent(f'''
        import os, signal, io, torch
        torch.set_num_threads(1)
        class Killed(Exception):
            pass
        real_save, calls = torch.save, []
        def dying_save(obj, f, *a, **k):
            calls.append(1)
            if len(calls) < 3:
                return real_save(obj, f, *a, **k)
            buf = io.BytesIO()
            real_save(obj, buf)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
        fit({str(utk)!r}, __import__("pathlib").Path({str(run)!r}), {EPOCHS}, {EVERY})
    ''')
    env = {**os.environ, "TMPDIR": str(tmpdir), "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    ckpts = run / "checkpoints"
    stale = list(ckpts.glob(".*.tmp-*"))
    assert len(stale) == 1  # the half-written temp file, beside last.ckpt (never in TMPDIR)
    assert not list(tmpdir.iterdir())
    last = ckpts / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == EVERY  # the previous good checkpoint, complete
    resumed = outcome(*fit(utk, run, EPOCHS, EVERY, ckpt_path=str(last)))
    assert_same(reference, resumed)
    assert not list(ckpts.glob(".*.tmp-*"))  # the next save cleaned the partial file
    assert torch.load(previous_checkpoint(last), weights_only=True)["global_step"] == EVERY  # one good copy kept


def test_checkpoint_never_written_in_place(tmp_path, monkeypatch):
    """Stock Lightning opens ``last.ckpt`` itself for writing: a kill then truncates the only good checkpoint."""
    import builtins

    opened = []
    real_open = builtins.open

    def spy(file, mode="r", *a, **k):
        if "w" in mode:
            opened.append(Path(file).name)
        return real_open(file, mode, *a, **k)

    target = tmp_path / "last.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"step": 1}, target)
    monkeypatch.setattr(builtins, "open", spy)
    io.save_checkpoint({"step": 2}, target)
    assert opened and "last.ckpt" not in opened and all(name.startswith(".last.ckpt.tmp-") for name in opened if "last" in name)
    assert torch.load(target, weights_only=True) == {"step": 2}
    assert torch.load(previous_checkpoint(target), weights_only=True) == {"step": 1}


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_damaged_checkpoint_is_named_with_the_previous_good_one(tmp_path, damage):
    target = tmp_path / "last.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"global_step": 9, "w": torch.zeros(1000)}, target)
    io.save_checkpoint({"global_step": 12, "w": torch.ones(1000)}, target)
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"")
    with pytest.raises(CheckpointError) as err:
        io.load_checkpoint(target)
    message = str(err.value)
    assert str(target) in message and "damaged" in message and str(previous_checkpoint(target)) in message
    assert "\n" not in message
    assert load_checkpoint_file(previous_checkpoint(target))["global_step"] == 9
