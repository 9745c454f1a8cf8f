"""Checks of chapter 3's exercises (knowledge distillation): softmax with a temperature,
the KD loss, predictions about the effect of T.

The write-it-yourself training loop of chapters 3 and 5 is checked by
:mod:`atkd_lite.book.exercises.distill_loop`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from atkd_lite.book.exercises.feedback import answer_tensor, hint, passed

__all__ = ["check_kd_loss", "check_softmax_with_temperature", "check_temperature_predictions"]


def check_softmax_with_temperature(softmax_with_temperature) -> None:
    """Check ``softmax_with_temperature(logits, T)`` against ``F.softmax(logits / T, dim=1)``.

    ``logits`` is a batch ``(B, K)``; the answer must work for any T > 0 and for large
    logits (where a naive ``exp`` overflows).
    """
    gen = torch.Generator().manual_seed(3)
    cases = [
        (torch.randn(3, 4, generator=gen) * 3, 1.0),
        (torch.randn(3, 4, generator=gen) * 3, 4.0),
        (torch.randn(5, 10, generator=gen) * 5, 0.5),
        (torch.tensor([[1000.0, 0.0, -1000.0], [50.0, 60.0, 70.0]]), 2.0),
    ]
    for z, T in cases:
        got = answer_tensor(softmax_with_temperature(z.clone(), T), "the output")
        want = F.softmax(z.double() / T, dim=1)
        hint(tuple(got.shape) == tuple(z.shape),
             f"for logits shaped {tuple(z.shape)} the output should have the same shape, "
             f"got {tuple(got.shape)}")
        hint(bool(torch.isfinite(got).all()),
             f"with logits as large as {z.abs().max().item():g} your output has NaN or inf: "
             "exp overflows; subtract each row's maximum before exp (it cancels out)")
        if torch.allclose(got, want, atol=1e-5):
            continue
        hint(not torch.allclose(got, F.softmax(z.double() / T, dim=0), atol=1e-5),
             "your probabilities sum to 1 down each column (over the batch); normalise "
             "each row (over the K classes, dim=1)")
        hint(not torch.allclose(got, F.softmax(z.double() * T, dim=1), atol=1e-5),
             "you multiplied the logits by T; divide them by T (a high temperature "
             "makes the distribution *softer*)")
        hint(not torch.allclose(got, F.softmax(z.double(), dim=1), atol=1e-5),
             f"your output ignores T (T={T}); compute softmax(logits / T)")
        hint(False,
             f"for T={T} your output differs from softmax(logits / T) by up to "
             f"{(got - want).abs().max().item():.3g}; each row should be "
             "exp(z_i / T) / sum_j exp(z_j / T)")
    passed("rows of exp(z/T) / Σ exp(z/T), numerically stable for logits of ±1000 "
           f"(checked on {len(cases)} batches and temperatures 0.5 to 4).")


def check_kd_loss(kd_loss) -> None:
    """Check ``kd_loss(student_logits, teacher_logits, T)`` against the package's
    :func:`atkd_lite.losses.kd_loss`: ``T² · KL(p_T || p_S)``, batch mean.
    """
    from atkd_lite.losses import kd_loss as reference

    gen = torch.Generator().manual_seed(4)
    cases = [(torch.randn(6, 10, generator=gen) * 2, torch.randn(6, 10, generator=gen) * 4, T)
             for T in (1.0, 4.0, 8.0)]
    for z_s, z_t, T in cases:
        got = kd_loss(z_s.clone(), z_t.clone(), T)
        hint(isinstance(got, torch.Tensor) and got.numel() == 1,
             "return a scalar tensor (one number for the batch): average over the batch "
             "after summing the KL terms over the classes")
        got = float(got)
        want = float(reference(z_s, z_t, T))
        if abs(got - want) <= 1e-4 * max(1.0, abs(want)):
            continue
        p_s, p_t = F.softmax(z_s / T, 1), F.softmax(z_t / T, 1)
        kl_rows = (p_t * (p_t.log() - p_s.log())).sum(1)
        reverse = float((p_s * (p_s.log() - p_t.log())).sum(1).mean()) * T * T
        hint(abs(got - want / (T * T)) > 1e-4 * max(1.0, want),
             f"at T={T} your loss is the reference divided by T² = {T * T:g}; multiply "
             "the KL divergence by T² so the gradients keep their size at any T")
        hint(abs(got - float(kl_rows.sum()) * T * T) > 1e-4 * max(1.0, want),
             "your loss is summed over the batch; take the mean over the batch (the KL "
             "of each example summed over the classes, then averaged)")
        hint(abs(got - reverse) > 1e-4 * max(1.0, want),
             "your KL divergence runs the wrong way round: it is KL(p_teacher || p_student) "
             "= Σ p_T · (log p_T − log p_S), weighted by the teacher's probabilities")
        hint(abs(got - float(kl_rows.mean()) * T * T / z_s.shape[1]) > 1e-4 * max(1.0, want),
             "your loss is averaged over the classes as well; sum the KL terms over the "
             "classes and average only over the batch")
        hint(False,
             f"at T={T} your loss is {got:.5f} but should be {want:.5f} = T² · mean over "
             "the batch of Σ_k p_T,k (log p_T,k − log p_S,k), with p = softmax(z / T)")
    passed("T² · KL(softmax(z_T/T) || softmax(z_S/T)), averaged over the batch: the same "
           "as atkd_lite.losses.kd_loss at T = 1, 4 and 8.")


#: the questions of the chapter's "predict the effect of T" exercise and their choices
TEMPERATURE_QUESTIONS = {
    "large_T": ("uniform", "one-hot", "unchanged"),
    "small_T": ("uniform", "one-hot", "unchanged"),
    "top_class_changes": (True, False),
}


def check_temperature_predictions(predictions) -> None:
    """Check predictions about ``softmax(z / T)``: a dict with the keys of
    ``TEMPERATURE_QUESTIONS`` (each question's choices).

    - ``"large_T"``: what the distribution approaches as T grows without bound;
    - ``"small_T"``: what it approaches as T shrinks towards 0 (no ties in z);
    - ``"top_class_changes"``: whether changing T can change which class is the most
      probable.

    The answers are worked out numerically here (softmax at T = 10⁴ and T = 10⁻³ on
    random logits, and the argmax at many temperatures), not stored.
    """
    hint(isinstance(predictions, dict), "give your predictions as a dict, e.g. "
         "{'large_T': 'uniform', 'small_T': 'one-hot', 'top_class_changes': True}")
    for key, choices in TEMPERATURE_QUESTIONS.items():
        hint(key in predictions, f"answer the question {key!r} (choices: {choices})")
        hint(predictions[key] in choices,
             f"{key!r} must be one of {choices}, got {predictions[key]!r}")
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(200, 10, generator=gen, dtype=torch.float64) * 4

    def limit(T):
        p = F.softmax(z / T, dim=1)
        distance = {"uniform": (p - 1 / z.shape[1]).abs().max().item(),
                    "one-hot": (p - F.one_hot(z.argmax(1), z.shape[1])).abs().max().item(),
                    "unchanged": (p - F.softmax(z, dim=1)).abs().max().item()}
        return min(distance, key=distance.get)

    truth = {"large_T": limit(1e4), "small_T": limit(1e-3)}
    argmaxes = [(z / T).argmax(1) for T in (0.01, 0.1, 0.5, 1, 2, 4, 8, 16, 100)]
    truth["top_class_changes"] = any(bool((a != argmaxes[0]).any()) for a in argmaxes)
    why = {
        "large_T": "divide the logits by a huge T: all of them get close to 0, so all "
                   "exp(z/T) get close to 1",
        "small_T": "divide by a tiny T: the largest logit runs away from all others, so "
                   "its exp dominates the sum",
        "top_class_changes": "dividing every logit by the same positive T keeps their order, "
                             "and softmax is increasing",
    }
    for key in TEMPERATURE_QUESTIONS:
        hint(predictions[key] == truth[key], f"{key!r}: not {predictions[key]!r}. Hint: {why[key]}.")
    passed("as T grows the soft targets approach the uniform distribution, as T shrinks a "
           "one-hot vector, and the most probable class never changes: T only decides "
           "how much of the ranking below the top class the student gets to see.")
