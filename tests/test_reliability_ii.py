"""Reliability II: defects of issue #32 reproduced, each by a test that failed before the
fix (the closing note lists which item each covers)."""


import pytest
import torch

import atkd_lite as ak
from atkd_lite.cli import main
from atkd_lite.engine import DistillConfig
from atkd_lite.experiments.results import load_results
from atkd_lite.experiments.stats import paired_values
from atkd_lite.files import FileLock


def _cli_error(argv, capsys) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_first_and_last_both_zero_are_refused_before_any_work(capsys):  # item 6
    with pytest.raises(ValueError, match="first and last are both 0"):
        DistillConfig(first=0, last=0).validate()
    err = _cli_error(["distill", "--first", "0", "--last", "0", "--device", "cpu"], capsys)
    assert "both 0" in err


def test_a_lock_never_follows_a_symbolic_link(tmp_path):  # item 8
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    link = tmp_path / "folder" / ".atkd-lite-writer.lock"
    link.parent.mkdir()
    link.symlink_to(precious)
    with pytest.raises(OSError, match="symbolic link"):
        FileLock(link).acquire()
    assert precious.read_text() == "keep me"


def test_an_unbounded_shift_is_refused():  # item 11
    train = ak.load_dataset("mnist5k", "train").per_class(1)
    with pytest.raises(ValueError, match="augment=14 .*at most 13"):
        ak.distill(ak.teacher_cnn(), ak.student_cnn("tiny"), train, augment=14, epochs=1,
                   progress=False, device="cpu")


def test_runs_without_a_seed_or_twice_are_named():  # item 12 (and 4's duplicates)
    with pytest.raises(ValueError, match="run 1 of the results has no seed"):
        paired_values([{"method": "a", "seed": 0, "test_acc": 0.9},
                       {"method": "a", "test_acc": 0.9}])
    with pytest.raises(ValueError, match="two runs of 'a' with seed 0"):
        paired_values([{"method": "a", "seed": 0, "test_acc": 0.9},
                       {"method": "a", "seed": 0, "test_acc": 0.8}])


def test_deeply_nested_json_is_a_clear_error(tmp_path):  # item 12
    path = tmp_path / "results.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        load_results(path)


def test_the_student_is_never_written_over_its_teacher(tmp_path, capsys):  # item 13
    teacher = tmp_path / "teacher.pt"
    ak.save_checkpoint(teacher, ak.teacher_cnn(), dataset="mnist5k")
    before = teacher.read_bytes()
    err = _cli_error(["distill", "--teacher", str(teacher), "-o", str(teacher), "--device",
                      "cpu", "--epochs", "1", "--per-class", "1", "--no-progress"], capsys)
    assert "would replace the teacher" in err
    assert teacher.read_bytes() == before


def test_a_repeated_seed_is_refused(tmp_path, capsys):  # the messages to fix
    teacher = tmp_path / "teacher.pt"  # small and quick, should the check ever go
    ak.save_checkpoint(teacher, ak.teacher_cnn(), dataset="mnist5k")
    err = _cli_error(["sizes", "--seeds", "0,0", "--device", "cpu", "--teacher", str(teacher),
                      "--per-class", "1", "--epochs", "1", "--sizes", "tiny",
                      "--output-dir", str(tmp_path / "out")], capsys)
    assert "given twice" in err


def test_images_too_small_for_the_network_are_explained():  # item 14
    with pytest.raises(ValueError, match=r"cannot take images of \(2, 2\).*larger images"):
        ak.ATCam(ak.teacher_cnn().eval())(torch.rand(1, 1, 2, 2))


class Relabelled(torch.utils.data.Dataset):
    """A plain dataset (not an ImageSet) whose item 7 has a bad label or NaN pixels."""

    def __init__(self, base, label=15, nan=False):
        self.base, self.label, self.nan = base, label, nan

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        if i == 7:
            label = torch.as_tensor(self.label) if isinstance(y, torch.Tensor) else self.label
            return (x * float("nan"), y) if self.nan else (x, label)
        return x, y


def test_every_label_is_checked_not_only_the_first():  # item 9
    train = ak.load_dataset("mnist5k", "train").per_class(2)
    run = {"epochs": 1, "progress": False, "device": "cpu"}
    with pytest.raises(ValueError, match="item 7 of the dataset has the label 15"):
        ak.distill(ak.teacher_cnn(), ak.student_cnn("tiny"), Relabelled(train), **run)
    with pytest.raises(ValueError, match="item 7 of the dataset has NaN"):
        ak.distill(ak.teacher_cnn(), ak.student_cnn("tiny"), Relabelled(train, nan=True),
                   **run)
    with pytest.raises(ValueError, match="item 7 of the data has the label 15"):  # test data
        ak.evaluate(ak.teacher_cnn(), Relabelled(train), device="cpu")


def test_the_cache_error_suggests_no_shared_folder(tmp_path, monkeypatch):  # item 8
    import atkd_lite.files as files

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files.tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(PermissionError) as err:
        ak.cache_dir(tmp_path / "cache")
    suggested = str(err.value).split("e.g.")[1]
    assert "$HOME" in suggested and "export ATKD_LITE_CACHE=/tmp" not in suggested


def test_a_truncated_npz_is_a_clear_error(tmp_path):  # item 12
    from atkd_lite.datasets import read_medmnist_npz, write_medmnist_npz

    images = (torch.arange(4 * 28 * 28) % 251).to(torch.uint8).view(4, 28, 28).numpy()
    path = write_medmnist_npz(tmp_path / "x.npz", {"train": (images, [[0], [1], [0], [1]])})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable .npz file .*download it again"):
        read_medmnist_npz(path, "train")


def test_a_merge_never_writes_over_one_of_its_parts(tmp_path, capsys):  # item 5
    import copy

    from atkd_lite.experiments.shortcut import load_shortcut

    whole = load_shortcut("decoy-shortcut")
    folders = []
    for rho in whole.settings["rhos"]:  # one part per rho, as two machines would run them
        part = copy.deepcopy(whole)
        part.settings["rhos"] = [rho]
        part.runs = [r for r in whole.runs if r.get("rho") in (rho, None)
                     and (r.get("rho") is not None or rho == whole.settings["rhos"][-1])]
        folders.append(tmp_path / f"part-{rho:g}")
        part.save(folders[-1])
    before = (folders[0] / "results.json").read_bytes()
    err = _cli_error(["shortcut-merge", *map(str, folders), "--output-dir", str(folders[0])],
                     capsys)
    assert "would replace it" in err
    assert (folders[0] / "results.json").read_bytes() == before


def test_a_checkpoint_is_verified_before_its_config_is_built(tmp_path, monkeypatch):  # 10
    import atkd_lite.checkpoints as ck

    path = tmp_path / "t.pt"
    ak.save_checkpoint(path, ak.student_cnn("tiny"), dataset="mnist5k")
    blob = torch.load(path, weights_only=True)
    no_digest = {**blob, "meta": {k: v for k, v in blob["meta"].items() if k != "sha256"}}
    torch.save(no_digest, tmp_path / "no-digest.pt")
    with pytest.raises(ck.CheckpointError, match="carries no digest"):
        ak.load_checkpoint(tmp_path / "no-digest.pt")
    huge = {**blob, "meta": {**blob["meta"], "config": {**blob["meta"]["config"],
                                                        "widths": [4096, 8192, 16384]}}}
    torch.save(huge, tmp_path / "huge.pt")
    built = []
    real = ck.build_model
    monkeypatch.setattr(ck, "build_model",
                        lambda config: built.append(torch.get_default_device()) or real(config))
    with pytest.raises(ck.CheckpointError, match="does not describe its weights"):
        ak.load_checkpoint(tmp_path / "huge.pt")
    assert built and all(d.type == "meta" for d in built)  # nothing allocated for real
    model, _ = ak.load_checkpoint(path)  # an honest one still loads
    assert next(model.parameters()).device.type == "cpu"


def _saved(tmp_path, runs, seeds=(0, 1)):
    from atkd_lite.experiments.results import ExperimentResults

    res = ExperimentResults(settings={"seeds": list(seeds)}, runs=[
        {"method": m, "seed": s, "test_acc": a, "parameters": 1, "time_per_epoch_s": 0.1}
        for m, s, a in runs])
    return res.save(tmp_path / "res") / "results.json"


def test_a_results_file_edited_by_hand_is_noticed(tmp_path):  # item 4
    import json

    path = _saved(tmp_path, [("student", 0, 0.90), ("fma", 0, 0.91)])
    assert len(load_results(path).runs) == 2  # as written: loads
    blob = json.loads(path.read_text())
    blob["runs"][1]["test_acc"] += 0.02  # the +2-point edit that flipped a verdict
    path.write_text(json.dumps(blob))
    with pytest.raises(ValueError, match="edited or damaged after it was written"):
        load_results(path)
    del blob["digest"]  # removing the digest does not help
    path.write_text(json.dumps(blob))
    with pytest.raises(ValueError, match="has no digest"):
        load_results(path)


@pytest.mark.parametrize("runs, message", [
    ([("fma", 0, 7.5)], "test_acc=7.5, not a fraction"),
    ([("fma", 0, -3)], "test_acc=-3, not a fraction"),
    ([("fma", 0, float("nan"))], "test_acc=nan"),
    ([("fma", 0, 0.9), ("fma", 0, 0.8)], "two runs of 'fma' with seed 0"),
    ([("fma", 5, 0.9)], "seed 5, which is not among the settings' seeds"),
])
def test_impossible_results_are_refused_even_with_a_digest(tmp_path, runs, message):  # 4
    with pytest.raises(ValueError, match=message):
        load_results(_saved(tmp_path, runs))


def test_a_results_set_is_written_whole_or_not_at_all(tmp_path, monkeypatch):  # item 7
    import atkd_lite.files as files

    path = _saved(tmp_path, [("student", 0, 0.9)])
    folder = path.parent
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix != ".lock"}
    real, written = files._write_temp, []

    def full_disk(target, write):  # the third file finds the disk full
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        written.append(target)
        return real(target, write)

    monkeypatch.setattr(files, "_write_temp", full_disk)
    from atkd_lite.experiments.results import ExperimentResults

    new = ExperimentResults(settings={"seeds": [0]}, runs=[
        {"method": "kd", "seed": 0, "test_acc": 0.95, "parameters": 1,
         "time_per_epoch_s": 0.1}])
    with pytest.raises(OSError, match="No space"):
        new.save(folder)
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix != ".lock"}
    assert after == before  # every file as it was, and no temporary file left behind


def test_a_folder_named_like_a_results_file_is_refused_before_work(tmp_path):  # item 7
    from atkd_lite.experiments.results import claim_output_dir

    (tmp_path / "out" / "results.png").mkdir(parents=True)
    with pytest.raises(IsADirectoryError, match="results.png"):
        claim_output_dir(tmp_path / "out")


def test_a_merge_refuses_runs_outside_a_parts_rho(tmp_path):  # item 4 (merge)
    import copy

    from atkd_lite.experiments.shortcut import load_shortcut, merge_shortcut

    whole = load_shortcut("decoy-shortcut")
    a, b = copy.deepcopy(whole), copy.deepcopy(whole)
    a.settings["rhos"], b.settings["rhos"] = [1.0], [0.9]
    a.runs = [r for r in whole.runs if r.get("rho") == 1.0]
    b.runs = [r for r in whole.runs if r.get("rho") in (0.9, 1.0)]  # b also holds rho 1
    with pytest.raises(ValueError, match=r"part 1 holds runs at rho \[1.0\]"):
        merge_shortcut([a, b])
    b.runs = [r for r in whole.runs if r.get("rho") == 0.9]
    b.runs.append(copy.deepcopy(b.runs[0]))  # one cell twice
    with pytest.raises(ValueError, match="same cell and seed more than once"):
        merge_shortcut([a, b])


def test_two_sharded_builds_never_share_a_folder(tmp_path):  # item 2
    from atkd_lite.cache import TeacherCache
    from atkd_lite.files import LockHeldError

    data = ak.load_dataset("mnist5k", "val").per_class(2)
    folder = tmp_path / "cache"
    folder.mkdir()
    other = FileLock(folder / ".sharded-cache.lock")  # another build holds the folder
    other.acquire(blocking=False)
    try:
        with pytest.raises(LockHeldError, match="being built by another process"):
            TeacherCache.build_sharded(ak.teacher_cnn().eval(), data, folder, shard_size=8,
                                       batch_size=4, maps=["fma"], at=False, progress=False)
        assert not list(folder.glob("shard-*.pt"))  # nothing written beside the other build
    finally:
        other.release()
    cache = TeacherCache.build_sharded(ak.teacher_cnn().eval(), data, folder, shard_size=8,
                                       batch_size=4, maps=["fma"], at=False, progress=False)
    assert len(cache) == 20


def test_a_device_given_as_the_teacher_is_not_called_corrupt(capsys):  # messages
    err = _cli_error(["distill", "--teacher", "/dev/null", "--device", "cpu", "--epochs", "1",
                      "--per-class", "1", "--no-progress"], capsys)
    assert "/dev/null is not a regular file" in err and "delete" not in err


class PickledObject:
    """Any class of the user's: torch.save pickles it, weights_only refuses it."""


def test_a_pickle_is_refused_without_torchs_advice_to_unpickle(tmp_path):  # messages
    from atkd_lite.checkpoints import CheckpointError, load_checkpoint

    path = tmp_path / "model.pt"
    torch.save({"meta": PickledObject()}, path)  # an object, not tensors
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "refused unread" in str(info.value)
    assert "weights_only=False" not in str(info.value)


def test_a_full_disk_is_said_in_words(tmp_path, monkeypatch):  # messages
    def full(obj, f, *args, **kwargs):  # what torch.save raises when the disk fills up
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 "
                           "vs 0")

    monkeypatch.setattr(torch, "save", full)
    target = tmp_path / "teacher.pt"
    with pytest.raises(OSError, match="the disk is probably full") as info:
        ak.save_checkpoint(target, ak.teacher_cnn())
    assert info.value.errno == 28 and "inline_container" not in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no temporary file left
