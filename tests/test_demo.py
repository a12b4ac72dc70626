"""README's quickstart runs as written (the demo script's Python part, against its own registries)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_demo_runs_and_digests_match():
    result = subprocess.run([sys.executable, "-m", "examples.quickstart.demo"], cwd=ROOT, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 pushed" in result.stderr + result.stdout
    assert "0 pushed, 4 unchanged" in result.stderr + result.stdout
    assert "digests match" in result.stdout
    assert "Traceback" not in result.stderr
