import pytest
import torch

import atkd_lite as ak
from atkd_lite.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from atkd_lite.device import get_device


@pytest.fixture(scope="module")
def small_sets():
    train = ak.load_dataset("mnist5k", "train").per_class(20)
    test = ak.load_dataset("mnist5k", "test").per_class(10)
    return train, test


def test_get_device():
    assert get_device("cpu").type == "cpu"
    assert get_device(None).type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="unknown device"):
        get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            get_device("cuda")


def test_loss_goes_down_on_a_small_batch():
    train = ak.load_dataset("mnist5k", "train").subset(range(64))
    model = ak.student_cnn("small")
    hist = ak.train_model(model, train, epochs=25, lr=1e-2, batch_size=64, progress=False,
                          device="cpu")
    losses = hist["loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert hist["train_acc"][-1] > 0.8


def test_same_seed_same_result_on_cpu(small_sets):
    train, test = small_sets
    runs = []
    for _ in range(2):
        ak.seed_everything(7)
        model = ak.student_cnn("tiny")
        hist = ak.train_model(model, train, test, epochs=2, seed=7, progress=False,
                              device="cpu", augment=1)
        runs.append((hist["loss"], [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_evaluate_matches_a_manual_count(small_sets):
    _, test = small_sets
    model = ak.student_cnn("tiny").eval()
    with torch.no_grad():
        manual = (model(test.float_images()).argmax(1) == test.labels).float().mean().item()
    assert ak.evaluate(model, test, batch_size=7) == pytest.approx(manual)


def test_channel_mismatch_is_caught_before_training(small_sets):
    train, _ = small_sets
    with pytest.raises(ValueError, match="in_channels=1"):
        ak.train_model(ak.teacher_cnn(in_channels=3), train, epochs=1, progress=False)


def test_checkpoint_round_trip(tmp_path, small_sets):
    model = ak.student_cnn("tiny")
    ak.train_model(model, small_sets[0], epochs=1, progress=False)
    path = save_checkpoint(tmp_path / "ckpt" / "s.pt", model, dataset="mnist5k", test_acc=0.5)
    assert not list(path.parent.glob(".*.tmp"))  # atomic: no temporary left behind
    loaded, meta = load_checkpoint(path)
    assert meta["dataset"] == "mnist5k" and meta["torch"] == torch.__version__
    assert meta["config"] == model.config
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_corrupt_and_mismatched_checkpoints(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    path = save_checkpoint(tmp_path / "t.pt", ak.student_cnn("tiny"), dataset="mnist5k")
    with pytest.raises(CheckpointError, match="dataset"):
        load_checkpoint(path, expect={"dataset": "cifar10"})
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(path, ak.student_cnn("small"))
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    with pytest.raises(CheckpointError, match="not an atkd_lite checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_pretrained_teacher_trains_once_then_loads(tmp_path, monkeypatch):
    calls = []
    real = ak.train_model

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ak.checkpoints, "train_model", counting)
    t1, meta1 = ak.pretrained_teacher(epochs=1, cache=tmp_path, progress=False, device="cpu",
                                      batch_size=256)
    t2, meta2 = ak.pretrained_teacher(epochs=1, cache=tmp_path, progress=False, device="cpu",
                                      batch_size=256)
    assert len(calls) == 1 and not t2.training
    assert meta1["test_acc"] == meta2["test_acc"] and 0 <= meta1["test_acc"] <= 1
    for a, b in zip(t1.state_dict().values(), t2.state_dict().values()):
        assert torch.equal(a, b)
    # a corrupt cache file is retrained, not fatal
    (ckpt,) = (tmp_path / "teachers").glob("*.pt")
    ckpt.write_bytes(b"garbage")
    ak.pretrained_teacher(epochs=1, cache=tmp_path, progress=False, device="cpu", batch_size=256)
    assert len(calls) == 2
