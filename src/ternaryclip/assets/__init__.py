"""Files shipped with the package: the bundled synthetic-world teacher (config, fp16 weights, card).

Paths only; ``ternaryclip.torch_clip.bundled_teacher`` (or ``load_float_clip("bundled")``) loads it.
"""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).parent
TEACHER_CONFIG = ASSETS / "synth-clip.json"
TEACHER_WEIGHTS = ASSETS / "synth-clip.safetensors"
TEACHER_CARD = ASSETS / "synth-clip-card.json"
