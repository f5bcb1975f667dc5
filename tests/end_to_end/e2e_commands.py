"""Running the project's command lines from the end-to-end tests."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def run(module, *args, expect=0):
    """`python -m module args...` from the repository root; asserts the
    exit code (showing the output's tail when it differs)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", module, *args],
                          capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=900)
    assert proc.returncode == expect, (proc.stdout[-3000:]
                                       + proc.stderr[-3000:])
    return proc


def sets(overrides):
    """["a=1", "b=2"] -> ["--set", "a=1", "--set", "b=2"]."""
    return [a for o in overrides for a in ("--set", o)]
