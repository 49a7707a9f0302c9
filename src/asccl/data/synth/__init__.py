"""``asccl data synth``: a synthetic MEAD with ground truth for SPFEM.

N speakers (``W901``, ``M902``, ``W903``, ``M904``, ...: MEAD-style ids outside MEAD's real
range; W901 is scikit-image's astronaut photo, the others drawn faces), the paper's seven
emotions, M sentences of procedural speech (:mod:`.speech`: no external program), faces
animated from their 68 landmarks (:mod:`.render`) with the mouth's opening and width read
from the audio's spectrum frame by frame. Layout under ``<out>``::

    MEAD/<speaker>/video/front/<emotion>/level_<n>/<NNN>.mp4   30 fps H.264 + AAC
    MEAD/<speaker>/audio/<emotion>/level_<n>/<NNN>.m4a         16 kHz mono AAC
    landmarks/<speaker>/<emotion>/level_<n>/<NNN>.npy          (frames, 68, 2) float32
    ground_truth/<emotion>/<speaker>_<NNN>.mp4                 the answer for each target
    ground_truth/<emotion>/<speaker>_<NNN>.landmarks.npy       (frames, 68, 2) float32
    records/...                                                what made each item (resume)

``MEAD/`` follows MEAD's conventions (index it with ``asccl data index --root <out>/MEAD``):
``neutral`` at ``level_1``, the six others at ``level_3``, ``happy`` also at ``level_1`` (a
clip the pairing ignores); sentences ``001``..``M``, except that ``disgusted`` numbers the
first three ``028``-``030`` when M >= 3. MEAD's default pairing rule pairs sentences
001-003; for more, set the rule's ``sentences`` to all (``[]``).

``ground_truth/<emotion>/<speaker>_<NNN>``: for every neutral clip (``<NNN>``: its sentence)
and every target emotion, the same speaker saying the neutral clip's words on the neutral
clip's timeline (its audio, mouth track, head motion and blinks) with the target's
expression at level 3: what an SPFEM model given the neutral clip should output. The clip
name is the evaluation layout's (``sources/<emotion>/W901_001.mp4``); the target
``neutral`` is the neutral clip itself. Landmarks are in pixels of the written frames.
The answer does not depend on the reference an SPFEM model is given, so a results folder's
``ground_truth/<setting>/<emotion>/<clip>`` (:mod:`asccl.evaluation.results`) is this same
file under every setting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asccl._lazy import lazy_names

_LAZY = {  # loaded on first use: the config alone (``--help``) needs no scipy or torch
    "Clip": "asccl.data.synth.dataset",
    "SynthConfig": "asccl.data.synth.config",
    "render_ground_truth": "asccl.data.synth.dataset",
    "run_synth": "asccl.data.synth.run",
    "synth_clip": "asccl.data.synth.dataset",
}

__all__ = ["Clip", "SynthConfig", "render_ground_truth", "run_synth", "synth_clip"]

if TYPE_CHECKING:
    from asccl.data.synth.config import SynthConfig
    from asccl.data.synth.dataset import Clip, render_ground_truth, synth_clip
    from asccl.data.synth.run import run_synth


__getattr__, __dir__ = lazy_names(__name__, _LAZY)
