"""The chapters' "write it yourself" loops train exactly what ``ak.distill`` trains.

Chapter 3 asks the reader to write knowledge distillation as a plain PyTorch loop (a
few lines on top of ``make_batches`` and ``make_optimizer``) and compares the weights
with ``ak.distill(..., method="kd")``; chapter 5 does the same for the FMA attention term
(``method="fma"``). The loops here are the chapters' solutions, written without the
distiller classes or the package's losses; if the engine's loop changes what it computes
(an extra forward, another loss reduction, another seeding order), these tests fail and
the chapters' exercises would no longer hold.
"""

import torch
import torch.nn.functional as F

import atkd_lite as ak
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
