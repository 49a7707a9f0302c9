"""Which (neutral, emotional) clips say the same sentence: explicit, configurable rules.

MEAD (the authors' choice): neutral ``level_1`` against emotional ``level_3``, sentences
001-003, except that MEAD numbers the same three sentences 028-030 for ``disgusted``.
RAVDESS: neutral (normal intensity) against strong intensity, same statement and take.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asccl.data.clips import Clip, ClipPair
from asccl.data.errors import DataError


@dataclass(frozen=True)
class PairingRule:
    """How clip pairs are formed.

    Attributes:
        emotions: emotional clips to pair with neutral ones.
        neutral_intensity, emotional_intensity: intensity (MEAD level) of each side.
        sentences: neutral sentence ids to use (empty: every neutral sentence).
        sentence_map: per emotion, neutral sentence id -> that emotion's id of the same
            sentence; emotions not listed use the neutral id unchanged.
    """

    emotions: tuple[str, ...] = ("angry", "disgusted", "fear", "happy", "sad", "surprised")
    neutral_intensity: int = 1
    emotional_intensity: int = 3
    sentences: tuple[str, ...] = ("001", "002", "003")
    sentence_map: dict[str, dict[str, str]] = field(
        default_factory=lambda: {"disgusted": {"001": "028", "002": "029", "003": "030"}}
    )


MEAD_RULE = PairingRule()
RAVDESS_RULE = PairingRule(
    emotions=("calm", "happy", "sad", "angry", "fear", "disgusted", "surprised"),
    neutral_intensity=1,
    emotional_intensity=2,
    sentences=(),
    sentence_map={},
)
DEFAULT_RULES = {"mead": MEAD_RULE, "ravdess": RAVDESS_RULE}


def pair_clips(clips: list[Clip], rule: PairingRule) -> tuple[list[ClipPair], list[DataError]]:
    """Form the clip pairs ``rule`` asks for; a missing partner is reported, not fatal."""
    by_key = {(c.speaker, c.emotion, c.intensity, c.sentence): c for c in clips}
    speakers = sorted({c.speaker for c in clips})
    pairs: list[ClipPair] = []
    problems: list[DataError] = []
    for speaker in speakers:
        neutral = sorted(
            (c for c in clips if c.speaker == speaker and c.emotion == "neutral"
             and c.intensity == rule.neutral_intensity),
            key=lambda c: c.sentence,
        )  # fmt: skip
        wanted = [c for c in neutral if not rule.sentences or c.sentence in rule.sentences]
        missing = set(rule.sentences) - {c.sentence for c in wanted}
        for sentence in sorted(missing):
            problems.append(DataError(speaker, f"no neutral clip for sentence {sentence}"))
        for emotion in rule.emotions:
            mapping = rule.sentence_map.get(emotion, {})
            for source in wanted:
                target = mapping.get(source.sentence, source.sentence)
                partner = by_key.get((speaker, emotion, rule.emotional_intensity, target))
                if partner is None:
                    problems.append(
                        DataError(
                            f"{speaker}/{emotion}",
                            f"no intensity-{rule.emotional_intensity} clip {target} to pair "
                            f"with neutral {source.sentence}",
                        )
                    )
                    continue
                pairs.append(ClipPair(neutral=source, emotional=partner))
    return pairs, problems
