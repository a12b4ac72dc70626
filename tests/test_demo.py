"""README's quickstart runs as written (the demo script's Python part, against its own registries)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_demo_runs_and_digests_match():
    result = subprocess.run([sys.executable, "-m", "examples.quickstart.demo"], cwd=ROOT, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stderr + result.stdout
    # 4 images, the signed vendor image and a 3-wheel closure land; the unsigned image is refused
    assert "8 pushed, 0 unchanged, 1 refused, 0 failed" in output
    assert "0 pushed, 8 unchanged, 1 refused, 0 failed; 0 bytes moved" in output
    assert "refused tuna/vendor/inference:1.1: unsigned" in output
    assert "digests match" in result.stdout
    report = Path(result.stdout.split("audit report: ", 1)[1].split()[0])
    html = report.read_text()
    assert "demo_trainer-2.0-py3-none-any.whl" in html and "vendor/inference:1.1" in html
    assert "Traceback" not in result.stderr
