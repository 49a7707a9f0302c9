"""Procedural speech: sentences of vowel and consonant units, a formant synthesiser with
per-emotion prosody, and the mouth articulation read back from the audio.

A sentence (:func:`sentence_units`) is a fixed sequence of syllables (consonant-vowel,
sometimes a final consonant) drawn from its number alone, so sentence ``k`` is the same
"words" for every speaker, emotion and seed. :func:`synthesize` speaks it: harmonics of
a pitch contour shaped by three formant resonances (vowels, nasals, approximants), band
noise for fricatives and stop bursts, silence for stop closures; the emotion sets the
rate (vowels stretch more than consonants, so timing differs non-uniformly and DTW has
work to do), pitch, pitch range and loudness (:data:`PROSODY`).

The mouth is driven by the audio only (:func:`articulation`), per video frame:

* opening = loudness (RMS, 35 dB range) x openness (the power centroid of 150-1100 Hz,
  an F1 estimate: /a/ opens wide, /i/ /u/ little) x voicing (share of power under 1.1 kHz:
  fricatives and bursts barely open it); bilabial closures are silent, so the lips close;
* width = the power centroid of 900-3000 Hz (an F2 estimate, in octaves around 1.6 kHz):
  front vowels (/i/ /e/) spread the lips (+1), back rounded ones (/u/ /o/, /w/) round them
  (-1); silent frames rest at 0.

So different sentences give different mouth trajectories, and a clip's ground truth with
another expression can be driven by the same audio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfilt

SAMPLE_RATE = 16000  #: what the pairing reads audio at
AAC_FRAME = 1024  #: samples per AAC frame: tracks are whole frames, so decoders return them
LEAD, TAIL = 0.2, 0.3  #: silence before and after the speech (seconds)

#: Prosody per emotion: rate %, pitch change %, pitch range %, volume change % (full intensity).
PROSODY = {
    "neutral": (100, 0, 100, 0),
    "angry": (116, 12, 190, 60),
    "disgusted": (80, -16, 120, 0),
    "fear": (122, 34, 45, -15),
    "happy": (110, 24, 165, 25),
    "sad": (76, -20, 40, -40),
    "surprised": (90, 45, 210, 35),
}

#: Vowels: F1, F2, F3 (Hz) of a scale-1 (adult male) vocal tract.
VOWELS = {
    "i": (280, 2250, 2900), "e": (480, 1900, 2550), "ae": (680, 1700, 2450),
    "a": (750, 1150, 2500), "uh": (600, 1200, 2450), "er": (480, 1350, 1700),
    "o": (500, 850, 2400), "u": (320, 850, 2250),
}  # fmt: skip
#: Consonants: kind, formant targets (loci), neutral duration (s).
CONSONANTS = {
    "p": ("stop", (200, 900, 2300), 0.07), "b": ("stop", (200, 900, 2300), 0.06),
    "t": ("stop", (200, 1800, 2600), 0.07), "d": ("stop", (200, 1800, 2600), 0.06),
    "k": ("stop", (250, 2000, 2500), 0.07), "g": ("stop", (250, 2000, 2500), 0.06),
    "m": ("nasal", (250, 1000, 2300), 0.07), "n": ("nasal", (250, 1600, 2600), 0.07),
    "s": ("hiss", (300, 1800, 2700), 0.10), "sh": ("hush", (300, 1900, 2500), 0.10),
    "f": ("breath", (300, 1100, 2400), 0.09), "h": ("breath", (500, 1500, 2500), 0.06),
    "w": ("glide", (300, 700, 2200), 0.06), "j": ("glide", (280, 2200, 2900), 0.06),
    "l": ("glide", (380, 1100, 2600), 0.06),
}  # fmt: skip
VOICED_STOPS = ("b", "d", "g")
#: Noise band (Hz) of each noise kind: fricatives and stop bursts.
NOISE_BANDS = {"hiss": (3500, 7500), "hush": (2000, 6000), "breath": (800, 7500)}


@dataclass(frozen=True)
class Unit:
    """One sound of a sentence: a phone, its neutral duration (s) and stress (0..1)."""

    phone: str
    duration: float
    stress: float = 0.0

    @property
    def kind(self) -> str:
        if self.phone == "_":
            return "pause"
        return "vowel" if self.phone in VOWELS else CONSONANTS[self.phone][0]


@dataclass(frozen=True)
class Voice:
    """A speaker's voice: mean pitch (Hz) and vocal-tract scale (formants x scale)."""

    f0: float
    formant_scale: float


def speaker_voice(index: int, female: bool) -> Voice:
    """The voice of speaker ``index`` (deterministic in ``index``)."""
    rng = np.random.default_rng([0x701CE, index])
    if female:
        return Voice(float(rng.uniform(190, 235)), float(rng.uniform(1.1, 1.18)))
    return Voice(float(rng.uniform(100, 130)), float(rng.uniform(0.96, 1.03)))


def sentence_units(k: int, duration: float) -> list[Unit]:
    """Sentence ``k`` (0-based): syllables drawn from ``k`` alone, about ``duration``
    seconds at the neutral rate, with short pauses between words."""
    rng = np.random.default_rng([0x5E47, k])
    vowels, onsets = list(VOWELS), list(CONSONANTS)
    codas = ["p", "t", "k", "m", "n", "s", "l", "f"]
    units: list[Unit] = []
    total = 0.0
    syllables_in_word = 0
    while total < duration:
        stress = float(rng.uniform() < 0.4)
        syllable = []
        if rng.uniform() < 0.85:
            onset = onsets[rng.integers(len(onsets))]
            syllable.append(Unit(onset, CONSONANTS[onset][2]))
        vowel = vowels[rng.integers(len(vowels))]
        syllable.append(Unit(vowel, float(rng.uniform(0.1, 0.15) + 0.05 * stress), stress))
        if rng.uniform() < 0.3:
            coda = codas[rng.integers(len(codas))]
            syllable.append(Unit(coda, CONSONANTS[coda][2]))
        syllables_in_word += 1
        if syllables_in_word >= rng.integers(1, 4):
            syllable.append(Unit("_", float(rng.uniform(0.04, 0.12))))  # word gap
            syllables_in_word = 0
        units += syllable
        total += sum(u.duration for u in syllable)
    if units[-1].phone == "_":
        units.pop()
    return units


def prosody(emotion: str, level: int) -> tuple[float, float, float, float]:
    """(rate %, pitch %, range %, volume %) at a MEAD level: interpolated from neutral
    (level 1: 40 %, 2: 70 %, 3: 100 % of the way)."""
    s = {1: 0.4, 2: 0.7, 3: 1.0}[level]
    neutral = PROSODY["neutral"]
    return tuple(n + s * (e - n) for n, e in zip(neutral, PROSODY[emotion], strict=True))


def synthesize(
    units: list[Unit],
    voice: Voice,
    emotion: str,
    level: int,
    rng: np.random.Generator,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Speak ``units``: float32 mono in [-1, 1], (samples,): ``LEAD`` s of room noise, the
    speech, ``TAIL`` s; padded to whole AAC frames. ``rng`` draws the noise."""
    rate, pitch, prange, volume = prosody(emotion, level)
    r = rate / 100
    # vowels stretch more than consonants when the rate changes; pauses most
    stretch = {"vowel": r**-1.3, "pause": r**-1.6}
    durations = [u.duration * stretch.get(u.kind, r**-0.6) for u in units]
    lengths = np.maximum(1, np.round(np.array(durations) * sample_rate)).astype(int)
    lead, tail = round(LEAD * sample_rate), round(TAIL * sample_rate)
    n = lead + int(lengths.sum()) + tail
    n += -n % AAC_FRAME
    formants = np.zeros((3, n))
    voicing = np.zeros(n)
    noise_amp = {kind: np.zeros(n) for kind in NOISE_BANDS}
    stressed = np.zeros(n)
    pos = lead
    nearest = [
        next((u for u in units[i:] if u.kind == "vowel"), units[i]) for i in range(len(units))
    ]
    for unit, length, follow in zip(units, lengths, nearest, strict=True):
        span = slice(pos, pos + length)
        pos += length
        if unit.phone == "_":
            formants[:, span] = np.array(VOWELS[follow.phone] if follow.kind == "vowel"
                                         else VOWELS["uh"])[:, None]  # fmt: skip
            continue
        if unit.kind == "vowel":
            formants[:, span] = np.array(VOWELS[unit.phone])[:, None]
            voicing[span] = 0.75 + 0.25 * unit.stress
            stressed[span] = unit.stress
            continue
        kind, targets, _ = CONSONANTS[unit.phone]
        formants[:, span] = np.array(targets)[:, None]
        if kind == "stop":  # closure, then a burst in its last 15 ms
            burst = min(length, round(0.015 * sample_rate))
            if unit.phone in VOICED_STOPS:
                voicing[span] = 0.08
            noise_amp["breath"][span.stop - burst : span.stop] = 0.35
        elif kind == "nasal":
            voicing[span] = 0.3
        elif kind == "glide":
            voicing[span] = 0.6
        else:
            noise_amp[kind][span] = {"hiss": 0.22, "hush": 0.2, "breath": 0.07}[kind]
    formants[:, :lead] = formants[:, lead : lead + 1]
    formants[:, pos:] = formants[:, pos - 1 : pos]
    # coarticulation: formants glide over 30 ms, amplitudes ramp over 10 ms
    formants = np.stack([_smooth(f, round(0.03 * sample_rate)) for f in formants])
    formants *= voice.formant_scale
    voicing = _smooth(voicing, round(0.01 * sample_rate))
    # pitch: declination, accents on stressed vowels, scaled by the emotion
    t = np.linspace(0.0, 1.0, n)
    accents = _smooth(stressed, round(0.08 * sample_rate))
    contour = 0.08 * (1 - 2 * t) + 0.12 * accents
    f0 = voice.f0 * (1 + pitch / 100) * (1 + contour * prange / 100)
    out = _harmonics(f0, formants, sample_rate) * voicing
    for kind, (lo, hi) in NOISE_BANDS.items():
        amp = _smooth(noise_amp[kind], round(0.005 * sample_rate))
        if amp.any():
            sos = butter(4, [lo, min(hi, 0.45 * sample_rate)], "bandpass", fs=sample_rate,
                         output="sos")  # fmt: skip
            band = sosfilt(sos, rng.normal(0.0, 1.0, n))
            out += amp * band / (np.std(band) + 1e-12) * 0.25
    out *= 0.45 * (1 + volume / 100) / (np.abs(out).max() + 1e-12)  # angry (+60 %) < 0.75
    out += rng.normal(0.0, 2e-4, n)  # room noise: pure zeros make log spectra degenerate
    return np.clip(out, -0.99, 0.99).astype(np.float32)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average over ``width`` samples (edges padded with the end values)."""
    if width <= 1:
        return x
    padded = np.pad(x, (width // 2, width - 1 - width // 2), mode="edge")
    c = np.cumsum(np.concatenate([[0.0], padded]))
    return (c[width:] - c[:-width]) / width


def _harmonics(f0: np.ndarray, formants: np.ndarray, sample_rate: int) -> np.ndarray:
    """Sum of the harmonics of ``f0`` (samples,), each weighted by the formant envelope
    (three resonances, ``formants`` (3, samples) Hz) at its frequency; peak-normalised."""
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    top = 0.45 * sample_rate
    k_max = int(top / f0.min())
    out = np.zeros(len(f0))
    gains, widths = np.array([1.0, 0.55, 0.3]), np.array([70.0, 90.0, 130.0])
    for start in range(0, len(f0), 4096):
        s = slice(start, start + 4096)
        k = np.arange(1, k_max + 1)[:, None]
        freq = k * f0[None, s]
        env = sum(g / (1 + ((freq - f[None, s]) / w) ** 2)
                  for g, w, f in zip(gains, widths, formants, strict=True))  # fmt: skip
        env = (env + 0.01) * np.clip((top - freq) / 1000, 0, 1)
        out[s] = (env * np.sin(k * phase[None, s])).sum(0)
    return out / (np.abs(out).max() + 1e-12)


def num_frames(num_samples: int, sample_rate: int = SAMPLE_RATE, fps: float = 30) -> int:
    """Video frames for an audio track: ceil(duration * fps) (every frame that starts before
    the sound ends), so the video is at most one frame longer than its audio."""
    return math.ceil(num_samples * fps / sample_rate - 1e-6)


def loudness_track(
    audio: np.ndarray, n_frames: int, sample_rate: int = SAMPLE_RATE, fps: float = 30
) -> np.ndarray:
    """Mouth opening in [0, 1] per video frame from the speech loudness (RMS in a two-frame
    window around each frame, 35 dB below the clip's loud frames = closed), smoothed
    with a fast attack and a slower release. (n_frames,) float64."""
    hop = sample_rate / fps
    db = np.empty(n_frames)
    for i in range(n_frames):
        c = (i + 0.5) * hop
        seg = audio[max(0, int(c - hop)) : int(c + hop)]
        db[i] = 20 * np.log10(np.sqrt(np.mean(seg.astype(np.float64) ** 2)) + 1e-9)
    ref = np.percentile(db, 95)
    raw = np.clip((db - (ref - 35)) / 35, 0, 1) ** 1.6
    out = np.empty(n_frames)
    level = 0.0
    for i, v in enumerate(raw):
        level += (0.75 if v > level else 0.45) * (v - level)
        out[i] = level
    return out


def spectral_shape(
    audio: np.ndarray, n_frames: int, sample_rate: int = SAMPLE_RATE, fps: float = 30
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per video frame (32 ms Hann window at the frame's centre): an F1 estimate (Hz: the
    lowest spectral peak in 150-1000 Hz with at least a quarter of that band's highest
    power: the strongest harmonic near F1 even where F2 of /u/ or /o/ falls below
    1 kHz), and shares of the power under 3.2 kHz: below 1 kHz and 1.6-3.2 kHz (of that
    voiced range), and of all power (voicing; fricatives are mostly above 3.2 kHz).
    Four (n_frames,) float64 arrays."""
    win = 512
    hop = sample_rate / fps
    padded = np.pad(audio.astype(np.float64), (win, win))
    starts = np.round((np.arange(n_frames) + 0.5) * hop).astype(int) + win // 2
    frames = padded[starts[:, None] + np.arange(win)[None]] * np.hanning(win)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freq = np.fft.rfftfreq(win, 1 / sample_rate)

    def energy(lo: float, hi: float) -> np.ndarray:
        return power[:, (freq >= lo) & (freq < hi)].sum(1) + 1e-20

    band = np.flatnonzero((freq >= 150) & (freq < 1000))
    p = power[:, band[0] - 1 : band[-1] + 2]
    mid = p[:, 1:-1]
    peak = (mid > p[:, :-2]) & (mid >= p[:, 2:]) & (mid >= 0.25 * mid.max(1, keepdims=True))
    f1 = freq[band][np.argmax(peak, axis=1)]  # no peak at all (silence): the band's start
    voiced_range = energy(80, 3200)
    return (f1, energy(80, 1000) / voiced_range, energy(1600, 3200) / voiced_range,
            voiced_range / energy(80, sample_rate))  # fmt: skip


def articulation(
    audio: np.ndarray, n_frames: int, sample_rate: int = SAMPLE_RATE, fps: float = 30
) -> tuple[np.ndarray, np.ndarray]:
    """The mouth from the audio alone: opening in [0, 1] and width in [-1, 1] (spread +,
    rounded -) per video frame, two (n_frames,) float64 arrays (see the module docstring)."""
    loud = loudness_track(audio, n_frames, sample_rate, fps)
    f1, low, high, voicing = spectral_shape(audio, n_frames, sample_rate, fps)
    voiced = np.clip((voicing - 0.5) / 0.3, 0, 1)
    openness = 0.2 + 0.8 * np.clip((f1 - 300) / 400, 0, 1)
    kernel = np.array([0.25, 0.5, 0.25])
    opening = np.convolve(np.pad(loud * openness * voiced, 1, mode="edge"), kernel, "valid")
    shape = np.clip((high - 0.2) / 0.2, 0, 1) - np.clip((low - 0.7) / 0.12, 0, 1)
    spread = shape * voiced * np.clip(loud / 0.3, 0, 1)
    width = np.convolve(np.pad(spread, 1, mode="edge"), kernel, "valid")
    return np.clip(opening, 0, 1), np.clip(width, -1, 1)
