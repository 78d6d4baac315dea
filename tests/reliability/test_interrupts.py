"""Every command stops on Ctrl-C (SIGINT) and SIGTERM within 2 s, with one ``interrupted:`` line, exit status 130 / 143,
no worker left and whole outputs that ``--resume`` (or ``--ckpt_path last.ckpt``) completes: each input exactly once,
the resumed fit bit-identical to an uninterrupted one. No command shows a traceback, on an error or at exit; an output
another run is writing is refused; an offline Hub load fails at once.

The commands run as subprocesses started as a script's background job (``cmd &``) starts them: with SIGINT ignored,
which the command's own handler must override (that is how ``kill -INT`` used to do nothing).
"""

from __future__ import annotations

import csv
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceage import _signals

STOP_WITHIN_S = 2.0  # on a machine that gives the command its CPU; see stop_bound()


def starvation() -> float:
    """How starved of CPU this machine is just now (a shared 2-core machine under a training job can give a process
    a quarter of a core): the wall time of 0.2 s of computation, over 0.2 s (1 on an idle machine)."""
    wall, cpu = time.monotonic(), time.process_time()
    while time.process_time() - cpu < 0.2:
        sum(range(1000))
    return max(1.0, (time.monotonic() - wall) / 0.2)


def stop_bound() -> float:
    """:data:`STOP_WITHIN_S`, scaled by :func:`starvation`."""
    return STOP_WITHIN_S * starvation()


def start(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """``faceage ARGS`` as a script's background job starts it: SIGINT ignored (``trap "" INT`` survives the exec)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(["sh", "-c", 'trap "" INT; exec "$0" "$@"', sys.executable, "-m", "faceage.cli", *args],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(args: list[str], cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = start(args, cwd, env)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def stop_when(proc: subprocess.Popen, ready, signum: int = signal.SIGINT, timeout: float = 240) -> tuple[float, str]:
    """Sends ``signum`` once ``ready()`` holds; returns (seconds from the signal to the exit, stderr)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"ended before the signal (status {proc.returncode}): {proc.stderr.read()[-1500:]}"
        assert time.monotonic() < deadline, "never got ready"
        time.sleep(0.02)
    sent = time.monotonic()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    return time.monotonic() - sent, err


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line holds ``marker`` (forked workers keep their parent's)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "cmdline").read_bytes() and (proc / "stat").read_text().split()[2] != "Z":
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[1:]


# ---- predict: SIGINT at a random point, then --resume --------------------------------------------------------------

@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, tuple[Path, int]]:
    """``detect``: 120 photos of one face (skimage's astronaut at several sizes); ``no-detect``: 400 face chips."""
    skimage_data = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("inputs")
    photos, chips = root / "photos", root / "chips"
    photos.mkdir()
    chips.mkdir()
    astronaut = Image.fromarray(skimage_data.astronaut())
    variants = [astronaut.resize((s, s)) for s in (176, 192, 208, 224)]
    for i in range(120):
        variants[i % 4].save(photos / f"p{i:03d}.jpg", quality=90)
    face = astronaut.crop((130, 10, 330, 210)).resize((64, 64))
    rng = np.random.default_rng(0)
    for i in range(400):
        noisy = np.clip(np.asarray(face, np.int16) + rng.integers(-8, 9, (64, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(chips / f"c{i:03d}.jpg", quality=90)
    return {"detect": (photos, 120), "no-detect": (chips, 400)}


@pytest.mark.parametrize("mode", ["detect", "no-detect"])
def test_sigint_stops_predict_and_resume_completes_it(folders, tmp_path, mode):
    folder, n = folders[mode]
    out = tmp_path / "ages.csv"
    args = ["predict", str(folder), "--output", str(out), "--threads", "1"]
    args += ["--workers", "2"] if mode == "detect" else ["--no-detect", "--batch-size", "4", "--workers", "1"]
    after_rows = random.Random().randint(1, n // 4)  # a random point of the run (printed on failure)

    def rows_written() -> bool:
        try:
            return out.read_bytes().count(b"\n") > after_rows
        except FileNotFoundError:
            return False

    proc = start(args, tmp_path)
    took, err = stop_when(proc, rows_written)
    assert proc.returncode == 128 + signal.SIGINT, (after_rows, err[-2000:])
    assert took < stop_bound(), f"stopped {took:.2f} s after SIGINT"
    assert "Traceback" not in err and "Exception ignored" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    found = re.fullmatch(rf"interrupted: (\d+) of {n} files written to {re.escape(str(out))}; rerun with --resume", last)
    assert found, last
    rows = csv_rows(out)
    assert all(len(r) == 13 for r in rows)  # whole rows only
    written = [r[0] for r in rows]
    assert len(written) == len(set(written)) == int(found.group(1)) >= after_rows
    assert not processes_with(str(out)), "a worker outlived the stop"
    assert not (tmp_path / ".ages.csv.lock").exists()

    done = run([*args, "--resume"], tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"{len(written)} skipped" in done.stderr
    files = sorted(r[0] for r in csv_rows(out))
    assert files == sorted(str(p) for p in folder.iterdir())  # every input exactly once


def test_sigterm_stops_predict_too(folders, tmp_path):
    folder, _ = folders["no-detect"]
    out = tmp_path / "ages.jsonl"
    proc = start(["predict", str(folder), "--no-detect", "--output", str(out), "--batch-size", "4", "--workers", "1",
                  "--threads", "1"], tmp_path)
    took, err = stop_when(proc, lambda: out.exists() and out.stat().st_size > 0, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM and took < stop_bound() and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("interrupted: ")
    import json

    assert all(json.loads(line)["file"] for line in out.read_text().splitlines())  # every line whole JSON


def test_an_output_another_run_writes_is_refused(folders, tmp_path, capsys):
    from faceage.cli import main
    from faceage.inference.output import OutputLock

    folder, _ = folders["no-detect"]
    out = tmp_path / "ages.csv"
    held = OutputLock(out)  # as a run writing ages.csv holds it
    try:
        for extra in ([], ["--resume"]):
            assert main(["predict", str(folder / "c000.jpg"), "--no-detect", "--output", str(out), *extra]) == 2
            err = capsys.readouterr().err.strip()
            assert err == (f"error: {out}: another faceage run (pid {os.getpid()}) is writing this file; wait for it to "
                           "end or choose another --output")
        assert not out.exists()  # neither truncated nor created
    finally:
        held.release()
    assert main(["predict", str(folder / "c000.jpg"), "--no-detect", "--output", str(out), "--quiet"]) == 0
    assert len(csv_rows(out)) == 1


# ---- fit: SIGINT mid-epoch saves last.ckpt there; the resume is bit-identical --------------------------------------

FIT_CONFIG = """seed_everything: 0
trainer: {max_epochs: 2, enable_progress_bar: false, enable_model_summary: false, deterministic: true,
          num_sanity_val_steps: 0, logger: false}
model:
  backbone: {name: mobilenetv3_small, image_size: 32}
  head: {name: coral}
  optim: {lr: 0.01}
  checkpoint_every_n_steps: 3
  early_stopping_patience: 0
data: {dataset: utkface, root: ROOT, batch_size: 8, num_workers: 0}
"""


def final_weights(run: Path) -> dict:
    import torch

    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.mark.usefixtures("one_torch_thread")
def test_sigint_stops_fit_at_a_step_with_last_ckpt_and_the_resume_is_exact(tmp_path, utkface_tree):
    import torch

    from faceage.cli import main

    config = tmp_path / "tiny.yaml"
    config.write_text(FIT_CONFIG.replace("ROOT", str(utkface_tree)))
    interrupted, reference = tmp_path / "interrupted", tmp_path / "reference"
    last = interrupted / "checkpoints" / "last.ckpt"
    proc = start(["fit", "--config", str(config), "--trainer.default_root_dir", str(interrupted)], tmp_path)
    delay = random.Random().uniform(0.0, 0.3)

    def trained_a_while() -> bool:
        if not last.exists():
            return False
        time.sleep(delay)
        return True

    took, err = stop_when(proc, trained_a_while)
    assert proc.returncode == 128 + signal.SIGINT, err[-3000:]
    # the stop includes finishing the step and writing last.ckpt (fsync'd), which a loaded disk can slow by seconds
    assert took < stop_bound() + 2.0, f"stopped {took:.2f} s after SIGINT"
    assert "Traceback" not in err, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("interrupted: training stopped at epoch ") and f"--ckpt_path {last}" in line, line
    saved = torch.load(last, weights_only=True)
    steps_per_epoch = 10  # 77 training faces in batches of 8
    assert 3 <= saved["global_step"] < 2 * steps_per_epoch
    assert not list(last.parent.glob(".*.tmp-*"))  # no half-written checkpoint

    assert main(["fit", "--config", str(config), "--trainer.default_root_dir", str(interrupted), "--ckpt_path", str(last)]) == 0
    assert main(["fit", "--config", str(config), "--trainer.default_root_dir", str(reference)]) == 0
    resumed, expected = final_weights(interrupted), final_weights(reference)
    assert resumed["global_step"] == expected["global_step"] == 2 * steps_per_epoch
    differ = [k for k, v in expected["state_dict"].items() if not torch.equal(v, resumed["state_dict"][k])]
    assert not differ, f"{len(differ)} tensors differ after the resume (stopped at step {saved['global_step']})"


# ---- the signal rules themselves (in this process) ------------------------------------------------------------------

@pytest.fixture
def handlers():
    previous = _signals.install()
    yield
    _signals.reset()
    _signals.uninstall(previous)
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def test_a_signal_during_held_work_waits_for_its_end_and_a_second_is_ignored(handlers):
    _signals.hold()
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # handled: held, not raised
    assert _signals.release() == signal.SIGINT
    os.kill(os.getpid(), signal.SIGINT)  # during the clean-up (a checkpoint save): ignored
    time.sleep(0.05)
    with pytest.raises(_signals.Interrupted) as stop:
        _signals.stop()
    assert stop.value.signum == signal.SIGINT and isinstance(stop.value, KeyboardInterrupt)


def test_held_work_that_runs_too_long_is_cut(handlers):
    _signals.hold()
    os.kill(os.getpid(), signal.SIGTERM)
    start_time = time.monotonic()
    with pytest.raises(_signals.Interrupted) as stop:
        while time.monotonic() - start_time < 5:
            time.sleep(0.01)
    assert stop.value.signum == signal.SIGTERM
    assert _signals.HOLD_LIMIT_S <= time.monotonic() - start_time < _signals.HOLD_LIMIT_S + stop_bound() / 2


def test_a_third_signal_ends_the_process_at_once(tmp_path):
    script = ("import os, signal, time\nfrom faceage import _signals\n_signals.install()\n_signals.hold()\n"
              "os.kill(os.getpid(), signal.SIGINT)\ntime.sleep(0.05)\n_signals.release()\n"  # claimed: stopping
              "for _ in range(2):\n    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(0.05)\nprint('not reached')\n")
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130 and proc.stdout == "" and proc.stderr == "interrupted again: stopping at once\n"


# ---- no traceback, one line and the right status on the error paths of every command --------------------------------

ERRORS = {  # command line -> (exit status, the last stderr line); paths under the test's folder
    "predict": (["predict", "{t}/none.jpg", "--no-detect", "--strict"], 1, "summary: 0 ok, 1 failed, 0 faces"),
    "verify": (["verify", "{t}/none.jpg", "--no-detect", "--challenge", "25", "--strict"], 1, "summary: 0 ok, 1 failed"),
    "compare": (["compare", "--pairs", "{t}/none.csv"], 2, "error: {t}/none.csv: pair file not found"),
    "prepare": (["prepare", "{t}/none", "{t}/chips"], 2, "error: {t}/none: folder not found"),
    "describe": (["describe", "{t}/none"], 2, "error: {t}/none: dataset not found"),
    "report": (["report", "{t}/none"], 2, "error: {t}/none: no test/test_predictions.csv found"),
    "calibrate": (["calibrate", "{t}/none", "--data", "{t}/none"], 2, "error: {t}/none: not a model directory"),
    "export": (["export", "{t}/none"], 2, "error: {t}/none: model not found"),
    "fit": (["fit", "--config", "{t}/none.yaml"], 2, "error: config: File does not exist: '{t}/none.yaml'"),
    "test": (["test", "--config", "{t}/none.yaml"], 2, "error: config: File does not exist: '{t}/none.yaml'"),
    "kfold": (["kfold", "--config", "{t}/none.yaml"], 2, "error: {t}/none.yaml: config file not found"),
    "tune": (["tune", "--config", "{t}/none.yaml", "--search", "{t}/none.yaml"], 2, "error: "),
    "serve": (["serve", "--model", "{t}/none", "--port", "1"], 2, "error: {t}/none: model not found"),
    "push": (["push", "{t}/none", "--repo-id", "me/model"], 2, "error: {t}/none: not a faceage model directory"),
    "predict to a closed pipe": (["predict", "PHOTO", "--no-detect", "--quiet"], 2, "error: "),
}


def test_error_paths_of_every_command_end_with_one_line(tmp_path, folders):
    """All commands at once (in parallel: most of the time is their imports)."""
    chip = str(folders["no-detect"][0] / "c000.jpg")
    procs = {}
    for name, (args, _, _) in ERRORS.items():
        args = [a.replace("{t}", str(tmp_path)).replace("PHOTO", chip) for a in args]
        procs[name] = start(args, tmp_path)
    procs["predict to a closed pipe"].stdout.close()  # as `faceage predict ... | head -0`
    for name, proc in procs.items():
        _, expected_status, expected_line = ERRORS[name]
        _, err = proc.communicate(timeout=300) if not proc.stdout.closed else (None, proc.stderr.read())
        proc.wait(timeout=300)
        assert "Traceback" not in err and "Exception ignored" not in err, (name, err[-2000:])
        assert proc.returncode == expected_status, (name, err[-2000:])
        if expected_line is not None:
            assert err.strip().splitlines()[-1].startswith(expected_line.replace("{t}", str(tmp_path))), (name, err[-500:])


# ---- offline Hub ----------------------------------------------------------------------------------------------------

def test_offline_hub_weights_fail_at_once_with_one_line(monkeypatch):
    from faceage.models.backbones import create_backbone
    from faceage.models.hub import WeightsUnavailable

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-cache")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", "/nonexistent-cache")
    create_backbone("resnet18")  # the imports and the network itself, outside the timing
    started = time.monotonic()
    with pytest.raises(WeightsUnavailable) as err:
        create_backbone("resnet18", pretrained=True)
    assert time.monotonic() - started < 1.0 * starvation()  # not a minute of retries
    message = str(err.value)
    assert "\n" not in message and "timm/resnet18" in message and "HF_HUB_OFFLINE=1" in message
    assert "/nonexistent-cache" in message and "pretrained false" in message


def test_an_unreachable_hub_is_offline_and_a_reachable_one_online(monkeypatch):
    import socket

    from faceage.models import hub

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    with socket.socket() as server:  # a port that accepts connections: the Hub "online"
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert not hub.hub_offline()
        with pytest.raises(FileNotFoundError), hub.hub_downloads("weights", "me/x") as online:
            assert online
            raise FileNotFoundError("online errors pass through unchanged")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
        monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
        started = time.monotonic()
        assert hub.hub_offline()
        with pytest.raises(hub.WeightsUnavailable, match=r"cannot be reached.*hf download me/x"), hub.hub_downloads("weights", "me/x"):
            from huggingface_hub import constants

            assert constants.is_offline_mode()  # inside: huggingface_hub's own offline mode (no retries)
            raise FileNotFoundError("not in the cache")
        assert time.monotonic() - started < hub.PROBE_TIMEOUT_S + 1


# ---- resumes go on in their own run folder --------------------------------------------------------------------------

def test_a_resumed_fit_goes_on_in_the_run_folder_of_its_checkpoint(tmp_path):
    """Lightning would start version_N+1, whose checkpoint callbacks forget the best score of version_N."""
    from types import SimpleNamespace

    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from faceage.training.lightning_cli import _continue_run_folder

    ckpt = tmp_path / "lightning_logs" / "version_3" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    (tmp_path / "lightning_logs" / "version_4").mkdir()
    auto, fixed, elsewhere = TensorBoardLogger(tmp_path), CSVLogger(tmp_path, version=9), TensorBoardLogger(tmp_path / "x")
    _continue_run_folder(SimpleNamespace(loggers=[auto, fixed, elsewhere]), str(ckpt))
    assert (auto.version, fixed.version, elsewhere.version) == (3, 9, 0)
    fresh = TensorBoardLogger(tmp_path)
    _continue_run_folder(SimpleNamespace(loggers=[fresh]), None)
    assert fresh.version == 5


def test_kfold_resume_keeps_only_folds_whose_fit_and_test_finished(tmp_path):
    from faceage.training.kfold import finished_folds

    def make(path: str) -> None:
        (tmp_path / path).mkdir(parents=True, exist_ok=True)

    make("fold_0/lightning_logs/version_0/model")
    make("fold_0_test/lightning_logs/version_0/test")
    time.sleep(0.02)
    (tmp_path / "fold_0_test/lightning_logs/version_0/test/test_results.json").write_text("{}")
    make("fold_1/lightning_logs/version_0/checkpoints")  # stopped during its fit
    make("fold_2/lightning_logs/version_0/model")  # fitted, stopped during its test
    make("fold_2_test/lightning_logs/version_0")
    assert finished_folds(tmp_path) == [0]
