"""The shared base of the ATCam-map methods (FMA, MIP, and your own map): the attention
loss between one map per network, each made from its own capture points.

Each network's map is combined from its own selection (:func:`~atkd_lite.capture.layer_selection`)
and resized to one size (the input's, or ``size``), so the teacher's and the student's
selections may differ in length and in depth. The map is the method's
:class:`~atkd_lite.signals.ATCamMap`: the built-in FMA and MIP maps take
:class:`~atkd_lite.ATCam`'s fast path (and ``compile_maps``); a map of your own is made
from the captured feature maps by its reference formula.

Defined in the book's chapter "Attention-guided distillation".
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from atkd_lite.atcam import ATCam, resize_weights, traceable_maps_from_raw
from atkd_lite.device import autocast_context, compile_function, cuda_graph_mode, eval_mode
from atkd_lite.losses.attention import attention_loss
from atkd_lite.methods.base import Distiller, check_map_sizes, layer_selection
from atkd_lite.signals import ATCamMap

__all__ = ["ATCamDistiller"]


class ATCamDistiller(Distiller):
    """The attention loss between the two networks' ATCam maps (``signal``, an
    :class:`~atkd_lite.signals.ATCamMap`)."""

    signal: ATCamMap = ATCamMap("fma")
    uses_atcam_maps = True

    def __init__(self, student, teacher, config=None, **kw):
        super().__init__(student, teacher, config, **kw)
        cfg = self.config
        #: compile both networks' map computation (``DistillConfig.compile_maps``)
        self.compile_maps = cfg.compile_maps
        fast = self.signal.is_builtin()
        if self.compile_maps and not fast:
            raise ValueError(f"compile_maps compiles the FMA and MIP maps; "
                             f"{type(self).__name__}'s own map has no compiled path: leave "
                             "it False")
        self.fast = fast
        cams = {}
        for who, net, spec in (("student", student, cfg.student_layers),
                               ("teacher", teacher, cfg.teacher_layers)):
            cams[who] = ATCam(net, combine=self.signal.combine if fast else "fma",
                              size=cfg.size, compile=self.compile_maps,
                              **layer_selection(spec, cfg.first, cfg.last, f"{who}_layers"))
        self.student_cam, self.teacher_cam = cams["student"], cams["teacher"]

    def setup(self, x_probe: torch.Tensor) -> None:
        """Find both networks' capture points (and check they give 4-D feature maps with a
        spatial extent: :func:`~atkd_lite.methods.base.check_map_sizes`)."""
        with eval_mode(self.student, self.teacher), torch.no_grad():
            for who, cam in (("student", self.student_cam), ("teacher", self.teacher_cam)):
                feats = cam.features(x_probe)[1]  # (names known after the first call)
                check_map_sizes(who, cam.layer_names, feats, f"{self.signal.key.upper()} map")

    def cache_needs(self) -> dict:
        cfg = self.config
        needs = {"maps": [self.signal.key], "size": cfg.size}
        if self.teacher_cam.layer_names is not None:  # known after setup()
            needs["layers"] = list(self.teacher_cam.layer_names)
        if cfg.teacher_layers is None:
            needs.update(first=cfg.first, last=cfg.last)
        return needs

    def _maps(self, cam: ATCam, x: torch.Tensor):
        """Logits and maps of one network: ATCam's fast path for the built-in maps, the
        signal's reference formula from the captured features for any other."""
        if self.fast:
            return cam(x)
        logits, feats = cam.features(x)
        return logits, self.signal.from_features(feats, cam.map_size(x), cam.p)

    # With compile_maps, the teacher's and the student's signals are their raw per-layer
    # maps (ATCam.raw_maps), and attention_term makes both maps and the loss in one
    # compiled call (_compiled_attention): one graph instead of three (the teacher's map,
    # the student's, the loss), each of which costs ~0.3 ms of guards and wrappers on the
    # CPU, and the teacher's map fused with the rest (benchmarks/RESULTS.md).
    def teacher_online(self, x, y):
        with torch.no_grad(), autocast_context(self.device, self.amp):
            if self.student_cam.compile is not None:  # raw maps, a list
                t_logits, t_maps = self.teacher_cam.raw_maps(x)
            else:
                t_logits, t_maps = self._maps(self.teacher_cam, x)
        return t_logits.float(), t_maps

    def student_forward(self, x, y):
        with autocast_context(self.device, self.amp):
            if self.student_cam.compile is not None:
                logits, raw = self.student_cam.raw_maps(x)
                return logits, _RawMaps(raw, self.student_cam.map_size(x))
            return self._maps(self.student_cam, x)

    def attention_term(self, s_att, t_att) -> torch.Tensor:
        mode = self.student_cam.compile
        if mode is None:
            return super().attention_term(s_att, t_att)
        return _compiled_attention(mode)(s_att, t_att, self.signal.combine,
                                         self.attention_form)


class _RawMaps(NamedTuple):
    """A network's raw per-layer maps (:meth:`ATCam.raw_maps`) and the size of its map."""

    maps: list
    size: tuple


def _maps_and_loss(s_raw, s_weights, teacher, t_weights, size, combine: str, form: str):
    """The attention loss from the student's raw maps and the teacher's raw maps (or its
    map, from a cache): what ``compile_maps`` compiles, as one graph."""
    s_map = traceable_maps_from_raw(s_raw, size, combine, s_weights)[0]
    if t_weights is not None:
        teacher = traceable_maps_from_raw(teacher, size, combine, t_weights)[0]
    return attention_loss(s_map, teacher, form=form)


@functools.cache
def _compiled_attention(mode: str):
    """:func:`_maps_and_loss` compiled once per ``torch.compile`` mode, called with the
    student's :class:`_RawMaps` and the teacher's raw maps (a list) or cached map."""
    compiled = compile_function(_maps_and_loss, mode)

    def loss(s_att: _RawMaps, t_att, combine: str, form: str) -> torch.Tensor:
        raw, size = s_att.maps, s_att.size
        if isinstance(t_att, torch.Tensor):  # from a cache
            teacher, t_weights = t_att, None
        else:  # online: raw maps, resized to the student's size
            teacher, t_weights = t_att, resize_weights(t_att, size)
        out = compiled(raw, resize_weights(raw, size), teacher, t_weights, size, combine, form)
        # a CUDA graph's output is overwritten by the graph's next replay
        return out.clone() if cuda_graph_mode(mode) and out.is_cuda else out

    return loss
