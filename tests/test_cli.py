import subprocess
import sys

import pytest

from atkd_lite.cli import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "train-teacher" in out and "mnist5k" in out


@pytest.mark.parametrize("argv, message", [
    (["train-teacher", "--epochs", "zero"], "positive integer"),
    (["train-teacher", "--dataset", "imagenet", "--epochs", "1"], "unknown dataset"),
    (["train-teacher", "--device", "tpu", "--epochs", "1"], "unknown device"),
    (["no-such-command"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]


def test_tiny_training_run_writes_a_checkpoint(tmp_path):
    out = tmp_path / "teacher.pt"
    proc = subprocess.run(
        [sys.executable, "-m", "atkd_lite", "train-teacher", "--epochs", "1",
         "--limit-per-class", "10", "--device", "cpu", "--no-progress", "--output", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout and out.exists()
    from atkd_lite.checkpoints import load_checkpoint

    _, meta = load_checkpoint(out)
    assert meta["epochs"] == 1 and 0 <= meta["test_acc"] <= 1


@pytest.mark.parametrize("command", ["sizes", "faithfulness", "reproduce"])
def test_experiment_subcommands_check_arguments_before_work(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"atkd-lite {command}" in capsys.readouterr().out
    assert main([command, "--methods", "bogus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown method" in err[0] and f"atkd-lite {command}" in err[0]
