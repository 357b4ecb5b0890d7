"""vidsr: video super-resolution batch processor.

import vidsr
result = vidsr.upscale_video("clip.mp4", "clip_x4.mp4", model="srgan")
"""

__version__ = "0.1.0"

__all__ = ["UpscaleResult", "upscale_video", "__version__"]


def __getattr__(name):
    # Lazy, so that `import vidsr` (and `vidsr --help`) does not pay for torch and PyAV.
    if name in ("upscale_video", "UpscaleResult"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'vidsr' has no attribute {name!r}")
