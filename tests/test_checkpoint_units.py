"""The checkpoint module pinned down piece by piece: the content digest (what it covers, that it stays the same
across versions), the format tag, the load errors, and how a run folder resolves to its checkpoint file."""
from __future__ import annotations

import pickle

import pytest
import torch

from deeprecipe.errors import DeepRecipeError
from deeprecipe.train.checkpoint import (FORMAT, RUN_KEYS, content_digest, load_checkpoint, load_run_checkpoint,
                                         resolve_checkpoint, save_checkpoint)


def _sample():
    return {"model": {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "e": torch.zeros(0)},
            "classes": ["a", "b"], "shape": (1, 28, 28), "epoch": 3, "lr": 0.1, "note": None}


def test_digest_of_a_known_payload_never_changes():
    """Checkpoints written by earlier versions carry this digest and must still load: the digest's recipe (markers,
    key order, tensor header and bytes) is part of the file format."""
    assert content_digest(_sample()) == "10eeccd68952351db54017521f452f0dd1e19682f3597eae1b580c56addd84ae"


@pytest.mark.parametrize("a, b", [
    ({"x": torch.zeros(2, 3)}, {"x": torch.zeros(3, 2)}),                     # same bytes, other shape
    ({"x": torch.zeros(2)}, {"x": torch.zeros(1, dtype=torch.float64)}),       # same bytes, other dtype
    ({"x": torch.tensor([1.0])}, {"x": torch.tensor([1.0000001])}),            # one low bit
    ({"x": 1}, {"x": "1"}),                                                    # int vs str
    ({"x": 1}, {"y": 1}),                                                      # key name
    ({"a": {"b": 1}, "c": 2}, {"a": {"b": 1, "c": 2}}),                        # where a dict ends
    ({"a": [[1], 2]}, {"a": [[1, 2]]}),                                        # where a list ends
    ({"a": [1]}, {"a": 1}),                                                    # a list is not its item
    ({"a": {}}, {"a": []}),                                                    # an empty dict is not an empty list
    ({"a": torch.zeros(0)}, {"a": torch.zeros(0, 1)}),                         # empty tensors of two shapes
])
def test_digest_tells_contents_apart(a, b):
    assert content_digest(a) != content_digest(b)


def test_digest_ignores_key_order_storage_and_its_own_field():
    t = torch.arange(12.0).reshape(3, 4)
    a = {"b": t.t().contiguous(), "a": 1, 2: "x"}
    b = {2: "x", "a": 1, "b": t.t(), "sha256": "anything"}  # non-contiguous view, other key order, a stored digest
    assert content_digest(a) == content_digest(b)
    assert content_digest({"w": torch.ones(2, requires_grad=True)}) == content_digest({"w": torch.ones(2)})
    assert content_digest([1, 2]) == content_digest((1, 2))


def test_saved_file_carries_format_and_digest(tmp_path):
    path = tmp_path / "sub" / "c.pt"
    save_checkpoint(path, _sample())  # the folder is created
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT == "deeprecipe-checkpoint-1"
    assert raw["sha256"] == content_digest(raw) and len(raw["sha256"]) == 64
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and loaded["shape"] == (1, 28, 28) and torch.equal(loaded["model"]["w"], _sample()["model"]["w"])


def test_a_changed_value_with_the_old_digest_is_corrupt(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _sample())
    raw = torch.load(path, weights_only=True)
    raw["epoch"] = 4
    torch.save(raw, path)
    with pytest.raises(DeepRecipeError, match=f"{path} is corrupt") as e:
        load_checkpoint(path)
    assert "best.pt / last.pt" in e.value.fix


def test_a_checkpoint_without_digest_still_loads(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"model": {"w": torch.ones(1)}}, path)
    assert load_checkpoint(path)["model"]["w"].item() == 1.0


def test_load_maps_to_the_given_device(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _sample())
    seen = {}
    real = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    device = torch.device("cpu")
    load_checkpoint(path, map_location=device)
    assert seen == {"map_location": device, "weights_only": True}
    load_checkpoint(path)
    assert seen["map_location"] == "cpu"


def test_missing_file_and_folder_are_clear_errors(tmp_path):
    for p in (tmp_path / "none.pt", tmp_path):
        with pytest.raises(DeepRecipeError, match=f"checkpoint {p} does not exist") as e:
            load_checkpoint(p)
        assert "written by deeprecipe" in e.value.fix


def test_a_torch_file_holding_no_dict_is_refused(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.ones(1)], path)
    with pytest.raises(DeepRecipeError, match=f"{path} is not a deeprecipe checkpoint") as e:
        load_checkpoint(path)
    assert "written by deeprecipe" in e.value.fix


def test_refused_pickle_names_the_first_line_of_the_reason(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    path.write_bytes(b"x")

    def refuse(*a, **k):
        raise pickle.UnpicklingError("Weights only load failed " + "y" * 200 + "\nsecond line")

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(DeepRecipeError) as e:
        load_checkpoint(path)
    assert str(e.value).startswith(f"{path} holds objects other than weights and was refused (Weights only load failed y")
    assert "second line" not in str(e.value) and "y" * 75 + ")" in str(e.value) and "y" * 76 not in str(e.value)
    assert "never unpickles code" in e.value.fix


@pytest.mark.parametrize("error", [RuntimeError, EOFError, OSError, ValueError])
def test_unreadable_files_name_the_error_kind(tmp_path, monkeypatch, error):
    path = tmp_path / "c.pt"
    path.write_bytes(b"x")

    def fail(*a, **k):
        raise error("boom")

    monkeypatch.setattr(torch, "load", fail)
    with pytest.raises(DeepRecipeError, match=rf"not a readable checkpoint \({error.__name__}\)") as e:
        load_checkpoint(path)
    assert "truncated" in e.value.fix


def test_a_zip_that_is_not_a_checkpoint_is_unreadable(tmp_path):
    import zipfile
    path = tmp_path / "c.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(DeepRecipeError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_write_error_without_strerror_still_names_the_error(tmp_path, monkeypatch):
    import deeprecipe.train.checkpoint as ck

    def fail(path, data):
        raise OSError("quota exceeded")

    monkeypatch.setattr(ck, "atomic_write_bytes", fail)
    with pytest.raises(DeepRecipeError, match=f"could not write checkpoint {tmp_path / 'c.pt'}: quota exceeded") as e:
        save_checkpoint(tmp_path / "c.pt", {})
    assert "previous checkpoint there is kept" in e.value.fix


# ------------------------------------------------------------------------------------------ run folders
def _ckpt(path, **extra):
    save_checkpoint(path, {k: k for k in RUN_KEYS} | extra)
    return path


def test_a_run_folder_resolves_to_best_then_last_then_its_top_level_file(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    top = _ckpt(run / "best.pt")
    assert resolve_checkpoint(run) == top
    last = _ckpt(run / "checkpoints" / "last.pt")
    assert resolve_checkpoint(run) == last and resolve_checkpoint(run, "other.pt") == last
    best = _ckpt(run / "checkpoints" / "best.pt")
    assert resolve_checkpoint(run) == best and resolve_checkpoint(run, "best.pt") == best
    assert resolve_checkpoint(best) == best  # a file is itself
    assert resolve_checkpoint(str(run)) == best


def test_a_folder_without_checkpoints_and_a_missing_run_are_clear_errors(tmp_path):
    with pytest.raises(DeepRecipeError, match=f"run folder {tmp_path} has no checkpoints/ema.pt") as e:
        resolve_checkpoint(tmp_path, "ema.pt")
    assert "deeprecipe train" in e.value.fix
    with pytest.raises(DeepRecipeError, match=f"run folder {tmp_path} has no checkpoints/best.pt"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(DeepRecipeError, match=f"run {tmp_path / 'gone'} does not exist") as e:
        resolve_checkpoint(tmp_path / "gone")
    assert "run folder" in e.value.fix


def test_a_run_checkpoint_must_hold_what_rebuilding_needs(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    path = _ckpt(run / "checkpoints" / "best.pt", epoch=2)
    got, ckpt = load_run_checkpoint(run)
    assert got == path and ckpt["epoch"] == 2 and all(ckpt[k] == k for k in RUN_KEYS)
    assert load_run_checkpoint(run, "best.pt")[0] == path
    assert RUN_KEYS == ("config", "classes", "mean", "std", "input_shape", "model")
    for missing in RUN_KEYS:
        save_checkpoint(path, {k: k for k in RUN_KEYS if k != missing})
        with pytest.raises(DeepRecipeError, match=f"lacks '{missing}'") as e:
            load_run_checkpoint(run)
        assert "deeprecipe train" in e.value.fix
    _ckpt(run / "checkpoints" / "last.pt", epoch=5)
    assert load_run_checkpoint(run, "missing.pt")[1]["epoch"] == 5
