"""``Predictor.predict_files`` with detection in worker processes: the same rows as one thread, a crashing file
named and the rest done."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from faceage.inference import predictor as predictor_module
from faceage.inference.chips import FaceChips
from faceage.inference.predictor import PROCESS_POOL_MIN_FILES, Predictor

skimage_data = pytest.importorskip("skimage.data")
pytestmark = pytest.mark.skipif(not predictor_module._can_fork(), reason="worker processes are forked on Linux only")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[str]:
    """18 photos: the astronaut at several sizes and mirrored, noise without a face, and one file that is no image."""
    root = tmp_path_factory.mktemp("photos")
    astronaut = Image.fromarray(skimage_data.astronaut())
    rng = np.random.default_rng(0)
    files = []
    for i in range(18):
        path = root / f"p{i:02d}.jpg"
        if i == 7:
            path.write_bytes(b"not an image")
        elif i % 5 == 4:
            Image.fromarray(rng.integers(0, 255, (240, 320, 3), np.uint8)).save(path)
        else:
            img = astronaut.resize((256 + 16 * i, 256 + 16 * i))
            (img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else img).save(path)
        files.append(str(path))
    assert len(files) >= PROCESS_POOL_MIN_FILES
    return files


def rows(results) -> list:
    return [(os.path.basename(r.path), r.error, [(f.box, round(f.age, 4), f.gender) for f in r.faces]) for r in results]


def test_worker_processes_give_the_rows_of_one_thread(tiny_model_dir, photos):
    with Predictor(str(tiny_model_dir), workers=2, threads=1) as in_processes:
        got = rows(in_processes.predict_files(photos))
        assert in_processes._pool is not None  # the files went through worker processes
        again = rows(in_processes.predict_files(photos))  # the pool is reused
    assert in_processes._pool is None  # closed by the context manager
    expected = rows(Predictor(str(tiny_model_dir), workers=1, threads=1).predict_files(photos))
    assert got == expected == again
    assert [r[0] for r in got] == [os.path.basename(f) for f in photos]
    errors = {name: error for name, error, _ in got if error}
    assert set(errors) == {"p07.jpg", "p04.jpg", "p09.jpg", "p14.jpg"}
    assert "not an image" in errors["p07.jpg"] and errors["p04.jpg"] == "no face found"
    assert all(len(faces) == 1 for name, error, faces in got if not error)


def test_a_file_that_kills_its_worker_is_named_and_the_rest_go_on(tiny_model_dir, photos, monkeypatch):
    real = FaceChips.__call__

    def crash_on_p10(self, source):  # forked workers inherit the patch: p10 kills whichever worker takes it
        if str(source).endswith("p10.jpg"):
            os._exit(3)
        return real(self, source)

    monkeypatch.setattr(FaceChips, "__call__", crash_on_p10)
    with Predictor(str(tiny_model_dir), workers=2, threads=1) as predictor:
        got = rows(predictor.predict_files(photos))
    assert [r[0] for r in got] == [os.path.basename(f) for f in photos]  # every file once, in order
    by_name = {name: (error, faces) for name, error, faces in got}
    assert "crashed" in by_name["p10.jpg"][0]
    assert all(len(by_name[f"p{i:02d}.jpg"][1]) == 1 for i in (0, 1, 2, 3, 5, 6, 8, 11, 12, 13, 15, 16, 17))


def test_workers_exit_when_their_parent_is_killed(tiny_model_dir, photos, tmp_path):
    """kill -9 of the process running predict_files leaves no worker behind (they would wait for work forever)."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "run.py"
    script.write_text(
        "import sys, time\n"
        "from faceage.inference.predictor import Predictor\n"
        f"p = Predictor({str(tiny_model_dir)!r}, workers=2, threads=1)\n"
        f"results = p.predict_files({photos!r})\n"
        "next(results)\n"
        "print(*[w.pid for w in p._pool._processes.values()], flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in proc.stdout.readline().split()]
        assert len(workers) == 2
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split()[2] != "Z"  # a zombie has exited
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers)


def test_thorough_hog_detection_stays_in_threads(tiny_model_dir, photos):
    """dlib's CNN (thorough HOG's check) hung in forked workers: with it the files go through threads. Thorough
    BlazeFace (corner tiles, no CNN) keeps the processes."""
    predictor = Predictor(str(tiny_model_dir), workers=2, threads=1, thorough=True, detector="hog")
    assert len(list(predictor.predict_files(photos[:PROCESS_POOL_MIN_FILES]))) == PROCESS_POOL_MIN_FILES
    assert predictor._pool is None
    with Predictor(str(tiny_model_dir), workers=2, threads=1, thorough=True) as blaze:
        assert len(list(blaze.predict_files(photos[:PROCESS_POOL_MIN_FILES]))) == PROCESS_POOL_MIN_FILES
        assert blaze._pool is not None
