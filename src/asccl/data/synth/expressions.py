"""The face's actions as landmark offsets: emotions, mouth opening, width and rounding.

Landmarks are dlib's 68-point layout. An action is a list of rows ``(landmarks, inward,
up)`` in units of the inter-ocular distance D; :func:`action_offsets` turns rows into
pixel offsets for one face ("inward" moves points towards the face's midline).
"""

from __future__ import annotations

import numpy as np

# dlib 68-point groups (indices in the image; "inward" = towards the face's midline)
JAW = list(range(17))
BROW_IN, BROW_MID, BROW_OUT = [21, 22], [19, 20, 23, 24], [17, 18, 25, 26]
LID_UP, LID_LOW = [37, 38, 43, 44], [40, 41, 46, 47]
LID_BELOW_UP = [41, 40, 47, 46]  #: the lower-lid point under each LID_UP point
ALAE, NOSE_LOW = [31, 35], [31, 32, 33, 34, 35]
CORNERS = [48, 54, 60, 64]
UPPER_LIP = [49, 50, 51, 52, 53, 61, 62, 63]
LOWER_LIP = [55, 56, 57, 58, 59, 65, 66, 67]
CHEEK_JAW = [2, 3, 4, 12, 13, 14]
#: Landmark index groups the tests and the ground truth speak of.
MOUTH_POINTS = list(range(48, 68))
BROW_POINTS = list(range(17, 27))
EYE_POINTS = list(range(36, 48))
#: Landmark i's mirror image (for symmetric templates).
MIRROR = np.array(
    [16 - i for i in range(17)]
    + [26, 25, 24, 23, 22, 21, 20, 19, 18, 17]
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)

Rows = list[tuple[list[int], float, float]]

#: Mouth opening gain (speech articulation) and resting jaw drop, per emotion.
MOUTH = {
    "neutral": (1.0, 0.0),
    "angry": (1.2, 0.0),
    "disgusted": (0.8, 0.04),
    "fear": (0.9, 0.12),
    "happy": (1.05, 0.03),
    "sad": (0.7, 0.0),
    "surprised": (1.15, 0.3),
}
#: How much of the full (level 3) effect each MEAD intensity level shows.
LEVEL_SCALE = {1: 0.4, 2: 0.7, 3: 1.0}

#: Facial action per emotion at full intensity (level 3). Rows add up.
EXPRESSIONS: dict[str, Rows] = {
    "neutral": [],
    "angry": [
        (BROW_IN, 0.08, -0.17), ([20, 23], 0.06, -0.13), ([19, 24], 0.03, -0.08),
        ([17, 26], 0.0, -0.01), (LID_UP, 0.0, -0.045), (LID_LOW, 0.0, 0.025),
        (CORNERS, 0.05, -0.01), ([50, 51, 52], 0.0, -0.015), (ALAE, -0.02, 0.02),
    ],
    "disgusted": [
        (BROW_IN, 0.05, -0.09), ([20, 23], 0.03, -0.06), (LID_LOW, 0.0, 0.035),
        (LID_UP, 0.0, -0.02), (NOSE_LOW, 0.0, 0.05), (ALAE, -0.02, 0.02), ([30], 0.0, 0.02),
        ([49, 50, 51, 52, 53, 61, 62, 63], 0.0, 0.08), (CORNERS, 0.02, -0.04),
        ([56, 57, 58], 0.0, -0.03),
    ],
    "fear": [
        (BROW_IN, 0.07, 0.22), ([20, 23], 0.04, 0.17), ([19, 24], 0.0, 0.12),
        (BROW_OUT, 0.0, 0.06), (LID_UP, 0.0, 0.065), (LID_LOW, 0.0, -0.01),
        (CORNERS, -0.09, -0.03), ([49, 53, 55, 59], -0.05, -0.015),
    ],
    "happy": [
        (CORNERS, -0.1, 0.13), ([49, 53, 55, 59], -0.045, 0.06), ([50, 52, 56, 58], -0.01, 0.02),
        (LID_LOW, 0.0, 0.04), (LID_UP, 0.0, -0.01), (ALAE, -0.03, 0.02),
        (CHEEK_JAW, -0.025, 0.02), (BROW_IN + BROW_MID + BROW_OUT, 0.0, 0.02),
    ],
    "sad": [
        (BROW_IN, 0.04, 0.13), ([20, 23], 0.02, 0.07), ([17, 26], 0.0, -0.05),
        (LID_UP, 0.0, -0.045), (CORNERS, 0.02, -0.11), ([49, 53, 55, 59], 0.0, -0.04),
        ([56, 57, 58], 0.0, 0.02), ([7, 8, 9], 0.0, 0.02),
    ],
    "surprised": [
        (BROW_IN, 0.0, 0.22), (BROW_MID, 0.0, 0.25), (BROW_OUT, 0.0, 0.2),
        (LID_UP, 0.0, 0.06), (LID_LOW, 0.0, -0.02), (CORNERS, 0.05, 0.0),
    ],
}  # fmt: skip

#: Mouth opening o = 1: (landmarks, inward, up) per unit opening.
MOUTH_OPEN: Rows = [
    ([66], 0.0, -0.33), ([65, 67], 0.0, -0.29), ([57], 0.0, -0.31), ([56, 58], 0.0, -0.27),
    ([55, 59], 0.0, -0.16), ([61, 62, 63, 50, 51, 52], 0.0, 0.03), (CORNERS, 0.05, -0.05),
    ([8], 0.0, -0.3), ([7, 9], 0.0, -0.27), ([6, 10], 0.0, -0.2), ([5, 11], 0.0, -0.12),
    ([4, 12], 0.0, -0.06), ([3, 13], 0.0, -0.02),
]  # fmt: skip
#: Lips spread (width w = +1, front vowels /i/, /e/): corners outwards, lips thinner.
MOUTH_SPREAD: Rows = [
    (CORNERS, -0.07, 0.01), ([49, 53, 55, 59], -0.04, 0.0), ([61, 63, 65, 67], -0.03, 0.0),
    ([50, 51, 52], 0.0, -0.015), ([56, 57, 58], 0.0, 0.015),
]  # fmt: skip
#: Lips rounded (w = -1, back rounded vowels /u/, /o/, /w/): corners inwards, the lips
#: pushed out into a rounder, narrower shape.
MOUTH_ROUND: Rows = [
    (CORNERS, 0.11, 0.0), ([49, 53], 0.06, 0.01), ([55, 59], 0.06, -0.01),
    ([61, 63], 0.04, 0.01), ([65, 67], 0.04, -0.01), ([50, 51, 52], 0.01, 0.03),
    ([56, 57, 58], 0.01, -0.03),
]  # fmt: skip


def action_offsets(rows: Rows, midline_x: float, pts: np.ndarray, unit: float) -> np.ndarray:
    """Turn (landmarks, inward, up) rows into (68, 2) pixel offsets for the face ``pts``
    ((68, 2) pixels; ``unit``: its inter-ocular distance in pixels)."""
    out = np.zeros((68, 2))
    side = np.sign(midline_x - pts[:, 0])  # +1 left of the midline: inward is +x
    side[np.abs(pts[:, 0] - midline_x) < 0.02 * unit] = 0
    for idx, inward, up in rows:
        out[idx, 0] += inward * side[idx] * unit
        out[idx, 1] -= up * unit
    return out


def eye_distance(pts: np.ndarray) -> float:
    """Inter-ocular distance of (68, 2) landmarks: between the two eyes' centres."""
    return float(np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0)))
