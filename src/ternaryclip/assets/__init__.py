"""Files shipped with the package: the bundled synthetic-world teacher (config, fp16 weights, card)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).parent
TEACHER_CONFIG = ASSETS / "synth-clip.json"
TEACHER_WEIGHTS = ASSETS / "synth-clip.safetensors"
TEACHER_CARD = ASSETS / "synth-clip-card.json"


def bundled_teacher():
    """The bundled teacher as a float32 open_clip ``CLIP`` in eval mode (trained by scripts/train_teacher.py)."""
    if not TEACHER_WEIGHTS.is_file():
        raise FileNotFoundError(
            f"the bundled teacher weights {TEACHER_WEIGHTS} are missing; train them with "
            "python scripts/train_teacher.py --install"
        )
    from ..clip_models import create_open_clip

    return create_open_clip(str(TEACHER_CONFIG), str(TEACHER_WEIGHTS)).float().eval()
