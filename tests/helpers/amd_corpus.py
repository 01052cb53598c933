"""A labelled answering-machine corpus, built from offline speech, and its scorer.

Every clip is what a dialer hears after the 200 OK, as a phone line carries it: 8 kHz through
PCMU (encoded and decoded), then at the 16 kHz the engine analyses legs at. Speech comes from
espeak-ng (several voices and speeds) and the Piper voice the local TTS uses.

- human: a short answer ("hello?", "yes, who is this?") after 0.3-0.9 s, then the silence
  of someone waiting; each once clean and once with line noise (white noise, 25 dB under the
  speech);
- machine: a voicemail greeting of 3-8 s, alone and followed by a beep of 400-1,500 ms at
  440-1,900 Hz (the clip records when the beep ends), some with line noise; and a few
  followed by DTMF digits or hold music instead of a beep;
- silence: digital silence, and line noise alone.

`score(...)` runs the detector over every clip and returns the figures the issue asks for.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr

from callboard.media import g711
from callboard.media.amd import AmdDetector, AmdParams, AmdVerdict, BeepFound, BeepTimeout
from callboard.media.frames import SAMPLE_RATE
from tests.helpers.speech import espeak

LINE_RATE = 8000

HUMAN_ANSWERS = (
    "Hello?",
    "Hello.",
    "Yes?",
    "Yes, who is this?",
    "Hi, this is Mark.",
    "Speaking.",
    "Hello, who's calling?",
    "Yeah?",
    "Good morning.",
    "Hello, Sarah speaking.",
)
GREETINGS = (
    "Hi, you've reached the voicemail of John Smith. I can't take your call right now, "
    "please leave a message after the tone.",
    "Hello, you have reached Acme Dental. Our office is currently closed. Please leave your "
    "name and number and we will call you back.",
    "The person you are calling is not available. Please leave a message after the beep.",
    "Hey, it's Anna. Sorry I missed you. Leave me a message and I'll get back to you soon.",
    "Thank you for calling. Nobody is available to take your call. At the tone, please record "
    "your message. When you are finished, hang up.",
)
ESPEAK_VOICES = (("en-us", 165), ("en", 150), ("en-us+f3", 175), ("en+m3", 140))
# People answer a phone briskly: espeak's 150-165 words a minute stretch "Hello, Sarah
# speaking." past the 1.5 s default greeting_duration (docs/AMD.md has that run too).
HUMAN_VOICES = (("en-us", 185), ("en", 175))
BEEPS = ((440.0, 400), (850.0, 600), (1000.0, 1000), (1400.0, 1500), (1900.0, 500))


@dataclass
class Clip:
    name: str
    label: str  # human | machine | no_speech
    audio: np.ndarray  # float in [-1, 1] at SAMPLE_RATE, after the PCMU line
    beep_end_s: float | None = None


@dataclass
class Scores:
    clips: int = 0
    verdicts: dict[str, dict[str, int]] = field(default_factory=dict)  # label -> result -> n
    human_machine_right: int = 0
    human_machine_total: int = 0
    beep_clips: int = 0
    beeps_in_time: int = 0
    beep_errors_ms: list[float] = field(default_factory=list)
    false_beeps: int = 0  # a beep reported on a clip without one
    wrong: list[str] = field(default_factory=list)

    @property
    def human_machine_accuracy(self) -> float:
        return self.human_machine_right / max(self.human_machine_total, 1)

    @property
    def beep_rate(self) -> float:
        return self.beeps_in_time / max(self.beep_clips, 1)


def _piper(texts: tuple[str, ...]) -> list[np.ndarray]:
    import json

    import onnxruntime
    from piper import PiperConfig, PiperVoice

    from callboard.speech.tts.local import default_voice_path

    path = default_voice_path()
    config = PiperConfig.from_dict(json.loads(Path(f"{path}.json").read_text()))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    voice = PiperVoice(session=session, config=config)
    out = []
    for text in texts:
        audio = np.concatenate([c.audio_int16_array for c in voice.synthesize(text)])
        out.append(soxr.resample(audio.astype(np.float64) / 32768.0, config.sample_rate, LINE_RATE))
    return out


def _level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """Scaled so that its active part has RMS `dbfs` (full-scale sine = 0 dBFS)."""
    active = x[np.abs(x) > 0.02 * np.max(np.abs(x))] if np.any(x) else x
    rms = float(np.sqrt(np.mean(active**2))) if active.size else 1.0
    return x * (10 ** (dbfs / 20) / np.sqrt(2) / max(rms, 1e-9))


def _line(x: np.ndarray) -> np.ndarray:
    """8 kHz float -> PCMU -> decoded -> 16 kHz float: what the analyser is given."""
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
    decoded = g711.ulaw_decode(g711.ulaw_encode(pcm)).astype(np.float64) / 32768.0
    return soxr.resample(decoded, LINE_RATE, SAMPLE_RATE)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * LINE_RATE))


def _noise(n: int, dbfs: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 10 ** (dbfs / 20) / np.sqrt(2), n)


def _tone(hz: float, ms: int) -> np.ndarray:
    t = np.arange(int(LINE_RATE * ms / 1000)) / LINE_RATE
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)  # 5 ms edges, as real beeps have
    return 10 ** (-12 / 20) * np.sin(2 * np.pi * hz * t) * ramp


def _dtmf(digits: str) -> np.ndarray:
    rows, cols = (697.0, 770.0, 852.0, 941.0), (1209.0, 1336.0, 1477.0)
    keys = "123456789*0#"
    out = []
    for digit in digits:
        k = keys.index(digit)
        t = np.arange(int(LINE_RATE * 0.2)) / LINE_RATE
        tone = np.sin(2 * np.pi * rows[k // 3] * t) + np.sin(2 * np.pi * cols[k % 3] * t)
        out += [0.2 * tone, _silence(0.1)]
    return np.concatenate(out)


def _music(seconds: float, seed: int) -> np.ndarray:
    """Hold music: three-note chords with harmonics, a new chord every 300 ms."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(LINE_RATE * 0.3)) / LINE_RATE
    out = []
    for _ in range(int(seconds / 0.3)):
        root = 220.0 * 2 ** (int(rng.integers(0, 12)) / 12)
        chord = sum(
            np.sin(2 * np.pi * root * ratio * h * t) / h
            for ratio in (1.0, 1.26, 1.5)
            for h in (1, 2, 3)
        )
        out.append(0.08 * chord * np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01))
    return np.concatenate(out)


def build(
    cache: Path | None = None, human_voices: tuple[tuple[str, int], ...] = HUMAN_VOICES
) -> list[Clip]:
    """The whole corpus (about 120 clips)."""
    directory = Path(cache or tempfile.mkdtemp(prefix="amd-corpus-"))
    directory.mkdir(parents=True, exist_ok=True)
    clips: list[Clip] = []
    rng = np.random.default_rng(7)

    def spoken(text: str, voice: str, speed: int) -> np.ndarray:
        return espeak(text, LINE_RATE, voice=voice, speed=speed, workdir=directory)

    humans = [
        (f"{voice}-{i}", spoken(text, voice, speed))
        for i, text in enumerate(HUMAN_ANSWERS)
        for voice, speed in human_voices
    ]
    humans += [(f"piper-{i}", audio) for i, audio in enumerate(_piper(HUMAN_ANSWERS))]
    for n, (name, speech) in enumerate(humans):
        lead = rng.uniform(0.3, 0.9)
        body = np.concatenate([_silence(lead), _level(speech, -18.0), _silence(3.5)])
        clips.append(Clip(f"human-{name}", "human", _line(body)))
        noisy = body + _noise(len(body), -43.0, seed=n)
        clips.append(Clip(f"human-noisy-{name}", "human", _line(noisy)))

    greetings = [
        (f"{voice}-{i}", spoken(text, voice, speed))
        for i, text in enumerate(GREETINGS)
        for voice, speed in ESPEAK_VOICES
    ]
    greetings += [(f"piper-{i}", audio) for i, audio in enumerate(_piper(GREETINGS))]
    for n, (name, speech) in enumerate(greetings):
        for beeped in (False, True):  # each greeting alone, and ending in a beep
            lead = rng.uniform(0.4, 1.2)
            parts = [_silence(lead), _level(speech, -18.0)]
            beep_end = None
            if beeped:
                hz, ms = BEEPS[n % len(BEEPS)]
                pause = rng.uniform(0.2, 0.8)
                parts += [_silence(pause), _tone(hz, ms)]
                beep_end = sum(len(p) for p in parts) / LINE_RATE
            parts.append(_silence(2.0))
            body = np.concatenate(parts)
            if n % 3 == 0:
                body = body + _noise(len(body), -45.0, seed=100 + n)
            label = f"machine-{name}{'-beep' if beeped else ''}"
            clips.append(Clip(label, "machine", _line(body), beep_end))

    # Greetings followed by what is not a beep: DTMF digits, hold music.
    for n, (name, speech) in enumerate(greetings[:4]):
        after = _dtmf("159#") if n % 2 == 0 else _music(3.0, seed=n)
        body = np.concatenate([_silence(0.6), _level(speech, -18.0), _silence(0.4), after])
        clips.append(
            Clip(
                f"machine-{'dtmf' if n % 2 == 0 else 'music'}-{name}",
                "machine",
                _line(np.concatenate([body, _silence(1.0)])),
            )
        )

    clips.append(Clip("silence", "no_speech", _line(_silence(6.0))))
    for n in range(3):
        clips.append(Clip(f"noise-{n}", "no_speech", _line(_noise(6 * LINE_RATE, -45.0, n))))
    return clips


def run(clip: Clip, params: AmdParams) -> tuple[AmdVerdict | None, float | None, bool]:
    """(the verdict, when a beep was reported (s into the clip), whether the wait timed out)."""
    detector = AmdDetector(params)
    frame = SAMPLE_RATE // 50
    pcm = np.clip(np.round(clip.audio * 32767), -32768, 32767).astype(np.int16)
    verdict, beep_at, timed_out = None, None, False
    for i in range(len(pcm) // frame):
        for outcome in detector.frame(pcm[i * frame : (i + 1) * frame], SAMPLE_RATE):
            if isinstance(outcome, AmdVerdict):
                verdict = outcome
            elif isinstance(outcome, BeepFound):
                beep_at = (i + 1) * frame / SAMPLE_RATE
            elif isinstance(outcome, BeepTimeout):
                timed_out = True
        if detector.done:
            break
    if verdict is None:
        verdict = detector.give_up()
    return verdict, beep_at, timed_out


def score(clips: list[Clip], params: AmdParams | None = None) -> Scores:
    params = params or AmdParams(beep_timeout=12000)
    scores = Scores()
    for clip in clips:
        verdict, beep_at, _ = run(clip, params)
        result = verdict.result if verdict is not None else "none"
        scores.clips += 1
        row = scores.verdicts.setdefault(clip.label, {})
        row[result] = row.get(result, 0) + 1
        if clip.label in ("human", "machine"):
            scores.human_machine_total += 1
            if result == clip.label:
                scores.human_machine_right += 1
            else:
                scores.wrong.append(f"{clip.name}: {result}")
        elif result != clip.label:
            scores.wrong.append(f"{clip.name}: {result}")
        if clip.beep_end_s is not None:
            scores.beep_clips += 1
            if beep_at is not None:
                error = (beep_at - clip.beep_end_s) * 1000
                scores.beep_errors_ms.append(error)
                if 0 <= error <= 200:
                    scores.beeps_in_time += 1
                else:
                    scores.wrong.append(f"{clip.name}: beep {error:.0f} ms off")
            else:
                scores.wrong.append(f"{clip.name}: beep missed")
        elif beep_at is not None:
            scores.false_beeps += 1
            scores.wrong.append(f"{clip.name}: beep reported at {beep_at:.2f} s")
    return scores
