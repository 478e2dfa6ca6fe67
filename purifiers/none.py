"""No purification: the attacker trains on the protected images as downloaded."""

from bench.plugin import Purifier


class NoPurifier(Purifier):
    name = "none"
    aliases = ("identity",)
    summary = "No purification (baseline)."
    version = "1"

    def purify(self, images, ctx):
        return [img.copy() for img in images]
