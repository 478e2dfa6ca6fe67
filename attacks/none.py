"""No attack: the base model's own samples for the protocol's prompts and seeds, with nothing
learned. It is the control of every identity measure: before personalisation the samples
must NOT look like the subject (the issue's "ISM at the cross-identity level"), and
identification rates are calibrated against it (metrics/identification.py)."""

from __future__ import annotations

from bench import sd
from bench.models import load_sd
from bench.plugin import Attack


class NoAttack(Attack):
    name = "none"
    aliases = ("base", "no-attack")
    summary = "Control: sample the (protected or base) model without personalising it."
    version = "1"
    zero_shot = True
    params = []

    def personalize(self, images, base, recipe, ctx, out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "NOTHING_LEARNED").write_text("the none attack learns nothing\n")

    def generate(self, personalized, base, gen, recipe, ctx):
        pipe = sd.pipeline(load_sd(base, ctx.device), gen.sampler)
        negative = ", ".join(x for x in (gen.negative_prompt, recipe.negative_prompt) if x)
        return gen.run(ctx, lambda prompt, seed: sd.generate(pipe, [prompt], [seed], gen.steps, gen.guidance_scale, negative,
                                                             gen.resolution)[0], recipe.sample_suffix)
