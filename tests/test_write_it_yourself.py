"""The chapters' "write it yourself" loops train exactly what ``ak.distill`` trains.

Chapter 3 asks the reader to write knowledge distillation as a plain PyTorch loop (a
few lines on top of ``make_batches`` and ``make_optimizer``) and compares the weights
with ``ak.distill(..., method="kd")``; chapter 5 does the same for the FMA attention term
(``method="fma"``). The loops here are the chapters' solutions, written without the
distiller classes or the package's losses; if the engine's loop changes what it computes
(an extra forward, another loss reduction, another seeding order), these tests fail and
the chapters' exercises would no longer hold.
"""

import pytest
import torch
import torch.nn.functional as F

import atkd_lite as ak
from atkd_lite.book import exercises
from atkd_lite.data import make_batches
from atkd_lite.distillers import FMADistiller
from atkd_lite.engine import make_optimizer


def kd_train(teacher, student, train, epochs, seed, batch_size, config):
    """Knowledge distillation in plain PyTorch: the solution of chapter 3's exercise."""
    alpha, T = ak.distillers.DEFAULT_ALPHA, config.T
    ak.seed_everything(seed)  # the batch order, as ak.distill seeds it
    batches = make_batches(train, batch_size, shuffle=True, seed=seed, device="cpu")
    opt, sched = make_optimizer(student, config.lr, config.weight_decay,
                                epochs * len(batches), schedule="onecycle")
    teacher.eval()
    for _ in range(epochs):
        student.train()
        for x, y, _idx in batches:
            with torch.no_grad():
                t_logits = teacher(x)
            s_logits = student(x)
            ce = F.cross_entropy(s_logits, y, label_smoothing=config.label_smoothing)
            soft = F.kl_div(F.log_softmax(s_logits / T, dim=1), F.log_softmax(t_logits / T, dim=1),
                            reduction="batchmean", log_target=True) * T * T
            loss = (1 - alpha) * ce + alpha * soft
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return student.eval()


def test_plain_kd_loop_trains_the_weights_of_distill():
    torch.set_num_threads(1)
    train = ak.load_dataset("mnist5k", "train").per_class(20, seed=0)  # 200 digits
    ak.seed_everything(1)
    teacher = ak.student_cnn("small").eval()  # any frozen network works as a teacher here
    config = ak.DistillConfig()
    settings = dict(epochs=2, batch_size=32, seed=0)  # 14 steps: the one-cycle schedule runs

    ak.seed_everything(0)
    mine = kd_train(teacher, ak.student_cnn("tiny"), train, config=config, **settings)
    ak.seed_everything(0)
    ref = ak.distill(teacher, ak.student_cnn("tiny"), train, method="kd", device="cpu",
                     progress=False, **settings).student
    for (name, a), b in zip(mine.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    # the comparison can fail: the same loop at another temperature trains other weights
    ak.seed_everything(0)
    other = kd_train(teacher, ak.student_cnn("tiny"), train, config=config.replace(T=1.0),
                     **settings)
    assert any(not torch.allclose(a, b, atol=1e-4)
               for a, b in zip(other.state_dict().values(), ref.state_dict().values()))


def fma_train(teacher, student, train, epochs, seed, batch_size, config):
    """FMA attention distillation in plain PyTorch: the solution of chapter 5's exercise."""
    beta = FMADistiller.default_beta
    cams = [ak.ATCam(net, first=config.first, last=config.last, combine="fma")
            for net in (student, teacher)]
    ak.seed_everything(seed)
    batches = make_batches(train, batch_size, shuffle=True, seed=seed, device="cpu")
    opt, sched = make_optimizer(student, config.lr, config.weight_decay,
                                epochs * len(batches), schedule="onecycle")
    teacher.eval()
    for _ in range(epochs):
        student.train()
        for x, y, _idx in batches:
            with torch.no_grad():
                _, t_map = cams[1](x)
            s_logits, s_map = cams[0](x)
            ce = F.cross_entropy(s_logits, y, label_smoothing=config.label_smoothing)
            diff = F.normalize(s_map.flatten(1), dim=1) - F.normalize(t_map.flatten(1), dim=1)
            loss = ce + beta * diff.pow(2).sum(dim=1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return student.eval()


def test_plain_fma_loop_trains_the_weights_of_distill():
    torch.set_num_threads(1)
    train = ak.load_dataset("mnist5k", "train").per_class(20, seed=0)
    ak.seed_everything(1)
    teacher = ak.student_cnn("small").eval()
    config = ak.DistillConfig()
    settings = dict(epochs=2, batch_size=32, seed=0)

    ak.seed_everything(0)
    mine = fma_train(teacher, ak.student_cnn("tiny"), train, config=config, **settings)
    ak.seed_everything(0)
    ref = ak.distill(teacher, ak.student_cnn("tiny"), train, method="fma", device="cpu",
                     progress=False, **settings).student
    for (name, a), b in zip(mine.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    # the comparison can fail: the student alone (beta = 0 here) trains other weights
    ak.seed_everything(0)
    alone = ak.distill(teacher, ak.student_cnn("tiny"), train, method="student",
                       device="cpu", progress=False, **settings).student
    assert any(not torch.allclose(a, b, atol=1e-4)
               for a, b in zip(alone.state_dict().values(), ref.state_dict().values()))


# -------------------------------------------- the chapters' check: any correct loop passes


def _taught_teacher(train):
    """A small network trained for four epochs: a teacher with opinions, made in seconds."""
    ak.seed_everything(3)
    net = ak.student_cnn("small")
    ak.train_model(net, train, epochs=4, batch_size=32, device="cpu", progress=False)
    return net.eval()


def _loader_kd(mistake=None, batch_size=64):
    """A correct KD loop written the usual way, with a DataLoader (or with one mistake)."""
    config = ak.DistillConfig()
    alpha, T = ak.distillers.DEFAULT_ALPHA, config.T

    def loop(teacher, student, train, epochs, seed):
        torch.manual_seed(seed + 100)  # another order than the package's
        data = torch.utils.data.TensorDataset(train.float_images(), train.labels)
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True)
        opt, sched = make_optimizer(student, config.lr, config.weight_decay,
                                    epochs * len(loader), schedule="onecycle")
        teacher.train() if mistake == "teacher in train mode" else teacher.eval()
        for _ in range(epochs):
            student.train()
            for x, y in loader:
                with torch.no_grad():
                    t_logits = teacher(x)
                s_logits = student(x)
                ce = F.cross_entropy(s_logits, y, label_smoothing=config.label_smoothing)
                s_log, t_log = F.log_softmax(s_logits / T, 1), F.log_softmax(t_logits / T, 1)
                if mistake == "KL reversed":
                    s_log, t_log = t_log, s_log
                soft = F.kl_div(s_log, t_log, reduction="batchmean", log_target=True)
                if mistake != "T² dropped":
                    soft = soft * T * T
                loss = (1 - alpha) * ce + alpha * soft
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        return student.eval()

    return loop


def _package_kd(teacher, student, train, epochs, seed):
    return kd_train(teacher, student, train, epochs, seed, batch_size=64,
                    config=ak.DistillConfig())


def test_the_loop_check_passes_correct_loops_in_any_order(capsys):
    torch.set_num_threads(1)
    train = ak.load_dataset("mnist5k", "train").per_class(20, seed=0)
    teacher = _taught_teacher(train)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    for loop in (_package_kd, _loader_kd()):
        exercises.check_distill_loop(loop, teacher, train, method="kd", batch_size=64)
        assert "✅ Correct" in capsys.readouterr().out
        # and far inside the tolerance: reordering the images moves the weights little
        assert exercises.distill_loop_distance(loop, teacher, train, method="kd",
                                               batch_size=64) < exercises.LOOP_TOLERANCE / 3
    for k, v in teacher.state_dict().items():  # the loops got a copy of the teacher
        torch.testing.assert_close(v, before[k], msg=k)

    def package_fma(teacher, student, train, epochs, seed):
        return fma_train(teacher, student, train, epochs, seed, batch_size=64,
                         config=ak.DistillConfig())

    exercises.check_distill_loop(package_fma, teacher, train, method="fma", batch_size=64)
    assert "✅ Correct" in capsys.readouterr().out


@pytest.mark.parametrize("mistake", ["T² dropped", "KL reversed", "teacher in train mode"])
def test_the_loop_check_refuses_the_typical_mistakes(mistake):
    torch.set_num_threads(1)
    train = ak.load_dataset("mnist5k", "train").per_class(20, seed=0)
    teacher = _taught_teacher(train)
    with pytest.raises(AssertionError, match="❌ Not yet: your loop trains other weights"):
        exercises.check_distill_loop(_loader_kd(mistake), teacher, train, method="kd",
                                     batch_size=64)


def test_the_loop_check_says_what_is_missing():
    train = ak.load_dataset("mnist5k", "train").per_class(20, seed=0)
    teacher = _taught_teacher(train)
    with pytest.raises(AssertionError, match="did not change"):
        exercises.check_distill_loop(lambda t, s, d, e, seed: s, teacher, train)
    with pytest.raises(AssertionError, match="return the trained student"):
        exercises.check_distill_loop(lambda t, s, d, e, seed: None, teacher, train)
