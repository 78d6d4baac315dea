"""The web app's upload cache cannot fill the disk: a loop posting files to Gradio's upload endpoint (no prediction
runs) against the app on 127.0.0.1 keeps the cache within its size bound; old files age out; shutdown empties it."""

from __future__ import annotations

import os
import socket
import time


from faceage.app import server, uploads


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_prune_bounds_age_and_size(tmp_path, monkeypatch):
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    cache = uploads.UploadCache(max_mb=1, max_age_s=60, parent=str(tmp_path))
    try:
        assert os.environ["GRADIO_TEMP_DIR"] == str(cache.dir)
        now = time.time()
        for i, (age_s, kb) in enumerate([(3600, 10), (30, 400), (20, 400), (10, 400), (0, 100)]):
            folder = cache.dir / f"u{i}"
            folder.mkdir()
            path = folder / "upload.bin"
            path.write_bytes(b"\0" * kb * 1024)
            os.utime(path, (now - age_s, now - age_s))
            os.utime(folder, (now - age_s - 10, now - age_s - 10))
        assert cache.prune() == 2  # the hour-old file (age), then the oldest until <= 1 MB (size)
        assert sorted(p.parent.name for p in cache.files()) == ["u2", "u3", "u4"]
        assert cache.size() == 900 * 1024
        assert not (cache.dir / "u0").exists()  # emptied upload folders go too
    finally:
        cache.close()
    assert not cache.dir.exists() and "GRADIO_TEMP_DIR" not in os.environ


def test_upload_loop_stays_bounded_and_shutdown_cleans(tiny_model_dir, tmp_path, monkeypatch):
    import httpx

    from faceage.inference.predictor import Predictor

    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    cache = uploads.UploadCache(max_mb=2, max_age_s=600, parent=str(tmp_path), interval=0.1)
    demo = server.build_app(Predictor(tiny_model_dir, detect=False, workers=1), max_upload_mb=1)
    port = _free_port()
    _, url, _ = server.launch(demo, port=port, max_upload_mb=1, block=False, quiet=True, cache=cache)
    try:
        assert url.startswith("http://127.0.0.1")
        payload = os.urandom(900 * 1024)  # not an image: stored all the same, no prediction runs
        deadline = time.monotonic() + 60
        stored = 0
        for i in range(6):  # bounded in count and in time
            assert time.monotonic() < deadline
            reply = httpx.post(f"{url.rstrip('/')}/gradio_api/upload", files={"files": (f"f{i}.bin", payload)}, timeout=30)
            assert reply.status_code == 200, reply.text
            stored += 1
            wait = time.monotonic() + 5
            while cache.size() > cache.max_bytes and time.monotonic() < wait:
                time.sleep(0.05)
            assert cache.size() <= cache.max_bytes, f"{cache.size()} bytes cached after {stored} uploads"
        assert stored == 6 and 0 < len(cache.files()) <= 2
        too_big = httpx.post(f"{url.rstrip('/')}/gradio_api/upload", files={"files": ("big.bin", os.urandom(2 * 2**20))}, timeout=30)
        assert too_big.status_code == 413
    finally:
        demo.close()
        cache.close()
    assert not cache.dir.exists()
    assert not list(tmp_path.glob("faceage-uploads-*"))
