"""Quiet Hugging Face libraries (the harness draws its own progress bars): used by the model
loaders and the zoo alike, so it lives apart from both."""

from __future__ import annotations

import os


def quiet_hf() -> None:
    """The harness draws its own progress bars; silence the libraries' per-file ones."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import diffusers.utils.logging as dlog
        import transformers.utils.logging as tlog

        dlog.disable_progress_bar()
        tlog.disable_progress_bar()
        tlog.set_verbosity_error()
        dlog.set_verbosity_error()
    except Exception:
        pass
