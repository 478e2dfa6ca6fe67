"""JPEG re-compression, the cheapest purifier (MetaCloak and RID evaluate quality 75)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from bench.params import Param
from bench.plugin import Purifier


class JPEG(Purifier):
    name = "jpeg"
    aliases = ("jpeg-compression",)
    summary = "Re-encode as JPEG at a given quality (PIL, 4:2:0 chroma subsampling)."
    version = "1"
    params = [
        Param("quality", int, 75, source="MetaCloak (liuyixin-louis/MetaCloak) and RID robustness evaluation: JPEG quality 75",
              help="JPEG quality", ge=1, le=100),
    ]

    def purify(self, images, ctx):
        out = []
        for img in images:
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=self.p.quality)
            buf.seek(0)
            out.append(np.asarray(Image.open(buf).convert("RGB")))
        return out
