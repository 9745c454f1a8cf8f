"""AT, the attention-transfer baseline (Zagoruyko & Komodakis): feature maps compared in
pairs of capture points."""

from __future__ import annotations

import torch

from atkd_lite.atcam import ATCam
from atkd_lite.device import autocast_context, eval_mode
from atkd_lite.losses.at import at_loss, at_vector, pair_layers
from atkd_lite.methods.base import Distiller, check_map_sizes, layer_selection
from atkd_lite.methods.registry import register
from atkd_lite.signals import ATMaps

__all__ = ["ATDistiller"]


@register
class ATDistiller(Distiller):
    """AT baseline (Zagoruyko & Komodakis): :func:`~atkd_lite.losses.at.at_loss` on every
    capture point, layers of the two networks paired by depth (:func:`~atkd_lite.losses.at.pair_layers`).

    With ``teacher_layers`` or ``student_layers`` given, the two selections (a None side
    meaning ``first``/``last`` of its automatic capture points) are paired in order
    instead, and must have the same length.

    The teacher side is its AT maps ``q`` (B, H, W), computed online or read from a
    cache; :func:`~atkd_lite.losses.at.at_loss` takes them as they are. The default weight
    is chosen on the validation split like every other method's (100; Zagoruyko &
    Komodakis' code uses β/2 = 500 with the same mean-squared form, which is worse here).
    """

    method_name = "at"
    signal = ATMaps()
    default_beta = 100.0

    def __init__(self, student, teacher, config=None, **kw):
        super().__init__(student, teacher, config, **kw)
        cfg = self.config
        self.by_depth = cfg.teacher_layers is None and cfg.student_layers is None
        if self.by_depth:
            self.student_cam = ATCam(student, layers="all")
            self.teacher_cam = ATCam(teacher, layers="all")
        else:
            self.student_cam = ATCam(student, **layer_selection(
                cfg.student_layers, cfg.first, cfg.last, "student_layers"))
            self.teacher_cam = ATCam(teacher, **layer_selection(
                cfg.teacher_layers, cfg.first, cfg.last, "teacher_layers"))
        self.pairs: list[tuple[int, int]] | None = None

    def setup(self, x_probe: torch.Tensor) -> None:
        """Find both networks' capture points with one probe forward and pair them.

        Raises:
            ValueError: explicit selections of different lengths (AT needs pairs).
        """
        with eval_mode(self.student, self.teacher), torch.no_grad():
            _, fs = self.student_cam.features(x_probe)
            _, ft = self.teacher_cam.features(x_probe)
        check_map_sizes("student", self.student_cam.layer_names, fs, "AT maps")
        check_map_sizes("teacher", self.teacher_cam.layer_names, ft, "AT maps")
        if self.by_depth:
            self.pairs = pair_layers(len(fs), len(ft))
            self._hook_teacher_pairs()
            return
        if len(fs) != len(ft):
            raise ValueError(
                f"AT compares feature maps in pairs, in order, but the student selection has "
                f"{len(fs)} layer(s) {self.student_cam.layer_names} and the teacher's "
                f"{len(ft)} {self.teacher_cam.layer_names}; give both the same number, e.g. "
                f"student_layers=[...{len(ft)} names...], or leave both teacher_layers and "
                "student_layers None to pair every capture point by depth (FMA and MIP "
                "accept selections of different lengths)")
        self.pairs = [(i, i) for i in range(len(fs))]
        self._hook_teacher_pairs()

    def _hook_teacher_pairs(self) -> None:
        # online, only the paired teacher layers are captured, each reduced to its AT map
        # inside the forward pass (not every capture point kept alive to the end)
        names = list(dict.fromkeys(self._teacher_names()))
        self.signal = ATMaps(tuple(self._teacher_names()))  # what a cache must hold
        self._teacher_pairs_cam = ATCam(self.teacher, layers=names, first=len(names), last=0)

    def _teacher_names(self) -> list[str]:
        return [self.teacher_cam.layer_names[j] for _, j in self.pairs]

    def cache_needs(self) -> dict:
        needs = {"at": True}
        if self.pairs is not None:  # known after setup()
            needs["at_layers"] = self._teacher_names()
        return needs

    def teacher_online(self, x, y):
        cam = self._teacher_pairs_cam
        with torch.no_grad(), autocast_context(self.device, self.amp):
            t_logits, q = cam.features(x, reduce=_at_map)
        by_name = dict(zip(cam.layer_names, q))
        return t_logits.float(), [by_name[name] for name in self._teacher_names()]

    def student_forward(self, x, y):
        with autocast_context(self.device, self.amp):
            logits, feats = self.student_cam.features(x)
        return logits, [feats[i] for i, _ in self.pairs]

    def attention_term(self, s_feats, t_q):
        return at_loss(s_feats, t_q)


def _at_map(features: torch.Tensor) -> torch.Tensor:
    """A feature map's AT map (B, H, W), as a teacher cache stores it."""
    return at_vector(features).view(features.shape[0], *features.shape[-2:])
