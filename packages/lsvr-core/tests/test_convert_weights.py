"""``lsvr convert-weights``: the converter hook, container unwrapping, error listing and the written file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from lsvr_core.cli.main import main
from lsvr_core.engine.convert import unwrap_state_dict
from lsvr_core.errors import ConversionError

PLUGIN = textwrap.dedent('''
    import torch
    from lsvr_core.api import ConversionError, ConverterSpec, hookimpl

    RENAMES = {"conv.weight": "backbone.stem.weight", "fc.bias": "head.cls.bias"}

    def convert(state):
        unmapped = sorted(k for k in state if k not in RENAMES)
        if unmapped:
            raise ConversionError("unmapped keys: " + ", ".join(unmapped))
        return {RENAMES[k]: v for k, v in state.items()}

    @hookimpl
    def lsvr_weight_converters():
        return [ConverterSpec("toy-v1", f"{__name__}:convert", "toy reference checkpoints")]
''')


@pytest.fixture()
def plugin_file(tmp_path: Path) -> Path:
    path = tmp_path / "toy_converter.py"
    path.write_text(PLUGIN)
    return path


def test_convert_writes_init_from_file(tmp_path: Path, plugin_file: Path, capsys: pytest.CaptureFixture) -> None:
    src, dst = tmp_path / "ref.pth", tmp_path / "lsvr.pt"
    w, b = torch.randn(4, 3, 3, 3), torch.randn(5)
    torch.save({"state_dict": {"module.conv.weight": w, "module.fc.bias": b}, "meta": {"epoch": 3}}, src)
    assert main(["--plugin", str(plugin_file), "convert-weights", "toy-v1", str(src), str(dst)]) == 0
    out = torch.load(dst, weights_only=True)
    assert set(out["model"]) == {"backbone.stem.weight", "head.cls.bias"}
    assert torch.equal(out["model"]["backbone.stem.weight"], w) and torch.equal(out["model"]["head.cls.bias"], b)
    assert out["meta"]["format"] == "toy-v1"
    assert "2 tensors" in capsys.readouterr().out


def test_unmapped_keys_exit_2_with_the_list(tmp_path: Path, plugin_file: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "ref.pth"
    torch.save({"conv.weight": torch.zeros(1), "extra.a": torch.zeros(1), "extra.b": torch.zeros(1)}, src)
    code = main(["--plugin", str(plugin_file), "convert-weights", "toy-v1", str(src), str(tmp_path / "x.pt")])
    assert code == 2
    assert "unmapped keys: extra.a, extra.b" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_list_and_help_name_the_formats(plugin_file: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--plugin", str(plugin_file), "convert-weights", "--list"]) == 0
    assert "toy-v1" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--plugin", str(plugin_file), "convert-weights", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines where other formats push it
    assert "toy-v1 (toy reference checkpoints)" in help_text


def test_unknown_format_lists_valid(tmp_path: Path, plugin_file: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--plugin", str(plugin_file), "convert-weights", "nope", "a", "b"]) == 2
    assert "valid: " in capsys.readouterr().err


def test_unwrap_rejects_non_dict() -> None:
    with pytest.raises(ConversionError, match="holds a list"):
        unwrap_state_dict([torch.zeros(1)], "f.pth")
