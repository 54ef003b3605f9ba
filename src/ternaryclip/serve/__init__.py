"""``ternaryclip serve``: an HTTP embedding server over the torch-free runtime.

Text and image embeddings, zero-shot classification and Immich's machine-learning ``/predict``
contract, with requests batched per model and tower.  Needs the ``serve`` extra
(``pip install 'ternaryclip[serve]'``); imports no torch.
"""

from .app import create_app
from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
