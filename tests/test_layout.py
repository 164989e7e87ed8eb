"""The house rules DESIGN.md states, checked on the source tree."""

from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "vitgan"
SOURCES = sorted(PKG.rglob("*.py"))


def test_no_file_over_400_lines():
    long = {str(p.relative_to(PKG)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def test_torch_distributed_only_in_vitgan_distributed():
    hits = [str(p.relative_to(PKG)) for p in SOURCES if "torch.distributed" in p.read_text()]
    assert hits == ["distributed.py"]


def test_one_atomic_write_helper():
    """Only vitgan/files.py fsyncs and renames files into place."""
    hits = [str(p.relative_to(PKG)) for p in SOURCES if "os.fsync" in p.read_text()]
    assert hits == ["files.py"]


def test_imports_go_downward():
    """metrics, data, layers and the bottom modules never import train, commands or bench."""
    low = [p for p in SOURCES if p.parent.name in ("metrics", "data", "layers")
           or p.name in ("files.py", "distributed.py", "config.py", "errors.py", "option_types.py",
                         "option_spec.py", "presets.py")]
    up = ("vitgan.train", "vitgan.commands", "vitgan.bench", "from vitgan import train")
    bad = [str(p.relative_to(PKG)) for p in low if any(u in p.read_text() for u in up)]
    assert not bad


def test_presets_are_data():
    """The presets table imports nothing of vitgan (config reads it, not the other way round)."""
    text = (PKG / "presets.py").read_text()
    assert "import vitgan" not in text and "from vitgan" not in text
