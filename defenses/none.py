"""The undefended baseline: publishes the clean images as they are."""

from bench.plugin import ImageDefense


class NoDefense(ImageDefense):
    name = "none"
    aliases = ("clean", "undefended")
    summary = "No protection: the attacker trains on the clean images (baseline)."
    version = "1"

    def budget(self) -> float:
        return 0.0

    def protect(self, subject, base, ctx):
        return [img.copy() for img in subject.train]
