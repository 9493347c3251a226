"""`pip install . && imagesearch serve` as the README's first command runs it: from the built wheel, installed
apart from the source checkout. The wheel carries sql/ and migrations/ as imagesearch_pg/_schema
(pyproject.toml's force-include), and the installed copy migrates a fresh database and serves from them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from imagesearch_pg.store import schema
from imagesearch_pg.store.database import create_engine
from tests.serving import serving

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def repository_files(folder: str) -> dict[str, bytes]:
    """The files of ``folder`` that a build sees (tracked or new, not ignored), by path from the root."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", folder], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    return {name: (ROOT / name).read_bytes() for name in listed if (ROOT / name).is_file()}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel pip builds from the checkout (hatchling, the build backend, is among the test extras)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(ROOT)], check=True, capture_output=True, timeout=300)
    [built] = out.glob("imagesearch_pg-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict[str, str]:
    """The wheel installed into a folder of its own; the environment that runs the commands from it, with the
    dependencies from this environment. The checkout is reachable only through the editable install's
    path entry, which comes after the installed copy."""
    target = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    return {**os.environ, "PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"}


@pytest.fixture
def scratch_url(engine):
    """A new, empty database on the tests' server."""
    name = f"wheel_{uuid.uuid4().hex[:12]}"
    admin = engine.execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield engine.url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))


def test_the_wheel_carries_the_schema_and_every_file_of_both_packages(wheel):
    with zipfile.ZipFile(wheel) as archive:
        packed = {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}
    for folder in ("sql", "migrations"):
        source = repository_files(folder)
        assert source, folder
        shipped = {name.removeprefix("imagesearch_pg/_schema/"): data for name, data in packed.items()
                   if name.startswith(f"imagesearch_pg/_schema/{folder}/")}
        assert shipped == source, f"{folder}/ differs in the wheel: {sorted(set(shipped) ^ set(source))}"
    for package in ("imagesearch_pg", "flask_app"):  # modules, the console's templates and static files
        source = repository_files(package)
        shipped = {name: data for name, data in packed.items()
                   if name.startswith(f"{package}/") and not name.startswith("imagesearch_pg/_schema/")}
        assert shipped == source, f"{package}/ differs in the wheel: {sorted(set(shipped) ^ set(source))}"


def test_the_installed_copy_migrates_a_fresh_database_and_serves_it(installed, scratch_url, settings, tmp_path):
    where = subprocess.run(
        [sys.executable, "-c", "import flask_app, imagesearch_pg.store.schema as s; "
                               "print(s.__file__, flask_app.__file__, s.schema_dir('sql'), s.schema_dir('migrations'), "
                               "sep='\\n')"],
        env=installed, cwd=tmp_path, capture_output=True, text=True, check=True, timeout=120).stdout.split("\n")
    target = Path(installed["PYTHONPATH"])
    assert [Path(line) for line in where[:4]] == [
        target / "imagesearch_pg/store/schema.py", target / "flask_app/__init__.py",
        target / "imagesearch_pg/_schema/sql", target / "imagesearch_pg/_schema/migrations"]

    env = {**installed, "IMAGESEARCH_DATABASE_URL": scratch_url, "IMAGESEARCH_HOME": str(settings.home)}
    upgraded = subprocess.run([str(target / "bin/imagesearch"), "db", "upgrade"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
    head = schema.head_revision()
    assert (upgraded.returncode, upgraded.stdout.strip()) == (0, f"schema at {head}"), upgraded.stderr
    scratch = create_engine(scratch_url, search_path=None)
    try:
        assert schema.current_revision(scratch) == head
    finally:
        scratch.dispose()

    # `imagesearch serve` from the installed copy: the HTTP layer found by its entry point, the console's
    # templates and static files read from the installed package.
    with serving(env, command=(str(target / "bin/imagesearch"),), extra=("--task-workers", "0"),
                 cwd=tmp_path) as (_, port):
        login = requests.get(f"http://127.0.0.1:{port}/login", timeout=30)
        assert login.status_code == 200 and 'name="password"' in login.text, login.text[:500]
        css = requests.get(f"http://127.0.0.1:{port}/console/static/console.css", timeout=30)
        assert css.status_code == 200 and css.content == (ROOT / "flask_app/console/static/console.css").read_bytes()
