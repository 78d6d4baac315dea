"""Training callbacks that are not covered by the end-to-end fit tests."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_gloo_process_group_is_destroyed_before_interpreter_exit(tmp_path):
    # atexit runs handlers last-in first-out: the probe registered before the callback's handler runs after it
    code = textwrap.dedent(f"""
        import atexit
        import torch.distributed as dist
        from faceage.training.callbacks import CloseProcessGroupAtExit

        dist.init_process_group("gloo", init_method="file://{tmp_path / 'store'}", rank=0, world_size=1)
        atexit.register(lambda: print("at exit, group alive:", dist.is_initialized()))
        callback = CloseProcessGroupAtExit()
        callback.setup(None, None, "fit")
        callback.setup(None, None, "validate")  # a second stage registers nothing more
        print("during the run, group alive:", dist.is_initialized())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["during the run, group alive: True", "at exit, group alive: False"]
