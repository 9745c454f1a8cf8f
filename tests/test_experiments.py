"""run_experiment / reproduce write well-formed, reloadable results; the CLI runs them."""

import csv
import json

import pytest
import torch

import atkd_lite as ak
from atkd_lite.cli import main
from atkd_lite.experiments import ExperimentResults, load_results, run_experiment


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return ak.teacher_cnn().eval()  # untrained: the plumbing, not the accuracy, is tested


def test_run_experiment_writes_results(teacher, tmp_path):
    out = tmp_path / "res"
    res = run_experiment(methods=("student", "fma+kd"), seeds=(0, 1), per_class=2, epochs=1,
                         student_size="tiny", teacher=teacher, output_dir=out,
                         device="cpu", progress=False, command="pytest run",
                         batch_size=16)
    for name in ("results.json", "results.csv", "results.md", "results.png"):
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob(".*tmp"))
    blob = json.loads((out / "results.json").read_text())
    assert blob["provenance"]["command"] == "pytest run"
    for key in ("git", "device", "versions", "date", "wall_time_s"):
        assert key in blob["provenance"]
    assert blob["settings"]["train_size"] == 20 and blob["settings"]["test_size"] == 1000
    # the teacher's weights are named exactly: the digest a checkpoint of them records
    ckpt = ak.save_checkpoint(tmp_path / "teacher.pt", teacher)
    stored = torch.load(ckpt, weights_only=False)["meta"]["sha256"]
    assert blob["teacher"]["weights_sha256"] == stored
    assert blob["teacher"]["source"] == "given"
    assert len(blob["runs"]) == 4
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["method"], r["seed"]) for r in rows] == [
        ("student", "0"), ("student", "1"), ("fma+kd", "0"), ("fma+kd", "1")]
    # the summary's mean and std are those of the per-run accuracies (recomputed here)
    for row in res.summary():
        accs = [float(r["test_acc"]) for r in rows if r["method"] == row["method"]]
        mean = sum(accs) / 2
        assert row["mean"] == pytest.approx(mean)
        assert row["std"] == pytest.approx((sum((a - mean) ** 2 for a in accs)) ** 0.5)
    md = (out / "results.md").read_text()
    assert "| student |" in md and "| fma+kd |" in md and "± " in md and "Commit:" in md
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = load_results(out)
    assert isinstance(back, ExperimentResults)
    assert back.summary() == res.summary() and back.to_markdown() == res.to_markdown()


def test_load_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="reproduce"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not an atkd_lite results"):
        load_results(tmp_path)


def test_run_experiment_bad_input(teacher):
    with pytest.raises(ValueError, match="unknown method"):
        run_experiment(methods=("fma", "gradcam"), teacher=teacher, progress=False)
    with pytest.raises(ValueError, match="augmentation"):
        run_experiment(methods=("fma",), teacher=teacher, augment=2, progress=False)


def test_cli_distill_and_reproduce_tiny(teacher, tmp_path, capsys):
    ckpt = ak.save_checkpoint(tmp_path / "teacher.pt", teacher)
    rc = main(["distill", "--method", "sals+kd", "--teacher", str(ckpt), "--per-class", "2",
               "--epochs", "1", "--student-size", "tiny", "--device", "cpu", "--no-progress",
               "--output", str(tmp_path / "student.pt")])
    assert rc == 0
    assert "test accuracy" in capsys.readouterr().out
    student, meta = ak.load_checkpoint(tmp_path / "student.pt")
    assert meta["method"] == "sals+kd" and 0 <= meta["test_acc"] <= 1
    out = tmp_path / "rep"
    rc = main(["reproduce", "--teacher", str(ckpt), "--methods", "student,mip", "--seeds", "0",
               "--per-class", "2", "--epochs", "1", "--student-size", "tiny", "--no-controls",
               "--device", "cpu", "--no-progress", "--output-dir", str(out)])
    assert rc == 0
    blob = json.loads((out / "results.json").read_text())
    assert blob["provenance"]["command"].startswith("atkd-lite reproduce --teacher")
    assert [r["method"] for r in blob["runs"]] == ["student", "mip"]


def test_cli_bad_arguments(capsys):
    assert main(["distill", "--method", "gradcam"]) == 2
    assert "fma+kd" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["reproduce", "--epochs", "0"])
    assert err.value.code == 2
    with pytest.raises(SystemExit) as err:
        main(["reproduce", "--seeds", "a,b", "--no-progress"])
    assert err.value.code == 2
    assert "comma-separated" in capsys.readouterr().err


def test_committed_results_load_by_name_and_are_well_formed():
    from atkd_lite.experiments import load_results, packaged_results

    names = packaged_results()
    assert "mnist5k-lowdata" in names
    for name in names:
        res = load_results(name)
        assert res.provenance.get("command") and res.provenance.get("date")
        for row in res.summary():
            assert 0.0 <= row["mean"] <= 1.0
    with pytest.raises(FileNotFoundError, match="mnist5k-lowdata"):
        load_results("no-such-results")


def test_controls_run_with_what_they_need(teacher, tmp_path, monkeypatch):
    monkeypatch.setenv("ATKD_LITE_CACHE", str(tmp_path))  # the small teacher trains here
    res = run_experiment(methods=("student", "kd"), seeds=(0,), per_class=2, epochs=1,
                         student_size="tiny", teacher=teacher, teacher_epochs=1,
                         controls=True, progress=False, device="cpu", batch_size=16)
    from atkd_lite.experiments.lowdata import CONTROLS

    assert [r["method"] for r in res.runs] == ["student", "kd", *CONTROLS]
    by = {r["method"]: r for r in res.runs}
    assert 0 < by["ls-matched"]["label_smoothing"] < 1
    assert by["ls"]["params"]["label_smoothing"] > 0
    # the transfer set: every training image, the student's 20 labelled ones first
    assert by["kd-transfer"]["transfer_images"] == 4000 - 20
    assert by["kd-small-teacher"]["params"]["alpha"] > 0
    assert list((tmp_path / "teachers").glob("teacher-mnist5k-2pc-*.pt"))


def test_matched_label_smoothing_by_hand():
    from atkd_lite.experiments.lowdata import matched_label_smoothing

    z = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    p = torch.softmax(z / 2.0, 1)[0, 0].item()  # the label's softened probability
    eps = matched_label_smoothing(z, torch.tensor([0, 1]), alpha=0.4, T=2.0)
    assert eps == pytest.approx(0.4 * (1 - p) * 3 / 2)
    # the smoothed target's mass on the label equals KD's mixed target's
    assert 1 - eps + eps / 3 == pytest.approx(0.6 + 0.4 * p)


def test_a_grid_run_in_two_parts_merges_into_the_grid_run_whole(teacher, tmp_path):
    """Each run is seeded by its method and seed alone: the parts give the runs of the
    whole grid, and merge_parts refuses parts that do not fit."""
    from atkd_lite.experiments.lowdata import merge_parts

    kw = dict(seeds=(0, 1), per_class=2, epochs=1, student_size="tiny", teacher=teacher,
              device="cpu", progress=False, batch_size=16)
    whole = run_experiment(methods=("student", "fma"), command="atkd-lite reproduce", **kw)
    one = run_experiment(methods=("student",), command="atkd-lite reproduce --methods "
                         "student --output-dir a", **kw)
    two = run_experiment(methods=("fma",), command="atkd-lite reproduce --methods fma", **kw)
    for part in (one, two):  # as if run from a clean checkout of one commit
        part.provenance["git"] = {"commit": "0" * 40, "dirty": False}
    merged = merge_parts([one, two], output_dir=tmp_path / "merged")
    acc = {(r["method"], r["seed"]): r["test_acc"] for r in whole.runs}
    assert {(r["method"], r["seed"]): r["test_acc"] for r in merged.runs} == acc
    assert merged.settings["methods"] == ["student", "fma"]
    assert merged.provenance["command"] == ("atkd-lite reproduce --methods student,fma "
                                            f"--no-controls --output-dir {tmp_path / 'merged'}")
    assert [p["command"] for p in merged.provenance["parts"]] == [
        one.provenance["command"], two.provenance["command"]]
    assert load_results(tmp_path / "merged").runs == merged.runs
    with pytest.raises(ValueError, match="more than once"):
        merge_parts([one, one])
    other = ExperimentResults({**two.settings, "epochs": 2}, two.runs, two.teacher,
                              two.provenance)
    with pytest.raises(ValueError, match="'epochs'"):
        merge_parts([one, other])
    dirty = ExperimentResults(two.settings, two.runs, two.teacher,
                              {**two.provenance, "git": {"commit": "0" * 40, "dirty": True}})
    with pytest.raises(ValueError, match="uncommitted"):
        merge_parts([one, dirty])


def test_a_method_that_needs_swatch_masks_is_refused_before_any_work(teacher):
    with pytest.raises(ValueError, match="swatch masks"):
        run_experiment(methods=("student", "rrr"), seeds=(0,), per_class=2, epochs=1,
                       teacher=None, device="cpu", progress=False)
    # the default grid is the book's low-data grid, which runs on plain digits
    from atkd_lite.experiments import ALL_METHODS
    assert "rrr" not in ALL_METHODS and "fma+kd" in ALL_METHODS


def test_rerun_differences_measures_how_far_two_runs_of_the_same_cells_lie_apart():
    """Matched by method and seed, by hand: identical runs, the largest and mean single-run
    gap, the largest shift of a method's mean, and the first epoch whose loss differs."""
    from atkd_lite.experiments.results import ExperimentResults, rerun_differences

    def run(method, seed, acc, losses):
        return {"method": method, "seed": seed, "test_acc": acc,
                "history": [{"epoch": i + 1, "loss": v} for i, v in enumerate(losses)]}

    a = ExperimentResults(settings={}, runs=[run("kd", 0, 0.90, [2.0, 1.0, 0.5]),
                                             run("kd", 1, 0.80, [2.0, 1.1, 0.6]),
                                             run("fma", 0, 0.70, [2.0, 1.0, 0.4]),
                                             run("only-here", 0, 0.5, [1.0])])
    b = ExperimentResults(settings={}, runs=[run("kd", 0, 0.90, [2.0, 1.0, 0.5]),
                                             run("kd", 1, 0.86, [2.0, 1.1, 0.7]),
                                             run("fma", 0, 0.67, [2.0, 1.2, 0.4])])
    d = rerun_differences(a, b)
    assert d["runs"] == 3 and d["identical"] == 1
    assert d["max_abs"] == pytest.approx(0.06) and d["mean_abs"] == pytest.approx(0.03)
    assert d["max_mean_shift"] == pytest.approx(0.03)  # kd: (0 + 0.06) / 2; fma: 0.03
    assert d["first_epoch"] == 2  # fma's second epoch
    assert rerun_differences(a, a)["first_epoch"] is None
    with pytest.raises(ValueError, match="share no"):
        rerun_differences(a, ExperimentResults(settings={}, runs=[run("x", 9, 0.1, [])]))
