"""`regsync --version` and `--help` start without the libraries only a verb needs (issue 16, P9):
what a module imports is a property of the code, checked here in a fresh interpreter; the time it
takes is measured by `python -m benchmarks`, never here (benchmarks P10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("rich", "pydantic", "requests", "urllib3", "sigstore", "pypi_simple", "cryptography", "loguru",
         "yaml", "regsync.runs", "regsync.policy")

PROBE = """
import json, sys
wanted = json.loads(sys.argv[2])
sys.argv = ["regsync", *json.loads(sys.argv[1])]
import regsync.cli
try:
    regsync.cli.main()
except SystemExit as exc:
    code = exc.code
heavy = sorted({m.split(".")[0] if not m.startswith("regsync.") else m for m in sys.modules
                if any(m == h or m.startswith(h + ".") for h in wanted)})
print("\\nHEAVY=" + json.dumps(heavy))
"""


def loaded_by(*args: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args)), json.dumps(HEAVY)],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    marker = result.stdout.rpartition("HEAVY=")[2]
    assert marker, result.stderr
    return json.loads(marker)


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["sync", "--help"], ["audit", "--help"],
                                  ["client-config", "--help"], ["verify", "--help"],
                                  ["plan", "--help"], ["plan", "show", "--help"]])
def test_start_up_imports_nothing_a_verb_needs(args):
    assert loaded_by(*args) == []


def test_a_verb_still_gets_its_libraries(tmp_path):
    # the lazy entry point must still reach the verb: policy check loads pydantic models
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nregistries: {}\n")
    assert "pydantic" in loaded_by("policy", "check", "-p", str(policy))
