"""Checkpoint round trip, clear errors on bad files, atomic writes, the recorded git commit."""
import pytest
import torch

from ecmnet_core.runtime.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint, make_metadata
from ecmnet_core.model import ECMNet


def test_round_trip_reproduces_outputs(tmp_path):
    torch.manual_seed(1)
    model = ECMNet(num_classes=5).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, make_metadata(5, input_size=(64, 64), val_miou=0.5))
    loaded, meta = load_model(path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert meta["val_miou"] == 0.5 and len(meta["colors"]) == 5
    # plain weights_only load must work (no pickled classes inside)
    assert torch.load(path, weights_only=True)["format"] == "ecmnet-checkpoint"


def test_half_storage_is_smaller_and_close(tmp_path):
    model = ECMNet(num_classes=5).eval()
    full = save_checkpoint(tmp_path / "f.pt", model, make_metadata(5))
    half = save_checkpoint(tmp_path / "h.pt", model, make_metadata(5), half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_model(half)
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("content,match", [(b"not a checkpoint", "not a readable checkpoint"),
                                           (None, "not an ECMNet checkpoint")])
def test_bad_files_raise_checkpoint_error(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save({"state_dict": {}}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "missing.pt")


def test_no_partial_file_when_save_fails(tmp_path):
    model = ECMNet(num_classes=3)
    with pytest.raises(TypeError, match="metadata.bad holds a object"):
        save_checkpoint(tmp_path / "x.pt", model, {"bad": object()})
    assert not list(tmp_path.iterdir())


def test_git_commit_prefers_environment_and_rejects_non_shas(monkeypatch, tmp_path):
    import subprocess as sp

    from ecmnet_core.runtime import checkpoint

    monkeypatch.setenv("ECMNET_GIT_COMMIT", "0123abc")
    assert checkpoint.git_commit() == "0123abc"
    monkeypatch.delenv("ECMNET_GIT_COMMIT")
    fake = sp.CompletedProcess([], 128, stdout="HEAD\n", stderr="fatal: ambiguous argument 'HEAD'")
    monkeypatch.setattr(checkpoint.subprocess, "run", lambda *a, **k: fake)
    assert checkpoint.git_commit() == "unknown"


def test_every_disagreeing_or_broken_checkpoint_is_one_line_checkpoint_error(bad_checkpoints):
    """Validated once in load_model: predict, bag-eval, eval, export and the node all see this error."""
    for case, (path, match) in bad_checkpoints.items():
        with pytest.raises(CheckpointError) as info:
            load_model(path)
        text = str(info.value)
        assert match in text and "\n" not in text and len(text) < 300, (case, text)


def test_validation_runs_before_building_a_lying_model(bad_checkpoints, monkeypatch):
    """A config asking for million-channel layers is refused before ECMNet(...) could allocate it."""
    from ecmnet_core.runtime import checkpoint

    built = []
    monkeypatch.setattr(checkpoint, "ECMNet", lambda cfg: built.append(cfg))
    with pytest.raises(CheckpointError, match="widths must hold ints in 1..1024"):
        load_model(bad_checkpoints["absurd_config"][0])
    assert built == []


def test_metadata_and_config_checks_accept_what_save_checkpoint_writes(tiny_checkpoint):
    from ecmnet_core.runtime.checkpoint import check_config, check_metadata

    blob = read_checkpoint(tiny_checkpoint)
    cfg = check_config(blob["model_config"])
    assert check_metadata(blob["metadata"], cfg.num_classes) is blob["metadata"]
    with pytest.raises(CheckpointError, match="num_classes must be an int in 1..256"):
        check_config(dict(blob["model_config"], num_classes=300))
    with pytest.raises(CheckpointError, match="input_size must be"):
        check_metadata(dict(blob["metadata"], input_size=[8, "x"]), 11)
