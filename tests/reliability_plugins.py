"""Plugins that break their contract in every way the reliability corpus checks (loaded with
`--plugin`): each must end its cell with one line naming the plugin and stage, never a
traceback, never an accepted result."""

import math
import os

import numpy as np

from bench.params import Param
from bench.plugin import Attack, ImageDefense, Metric, MetricResult, Purifier


class _Fault(ImageDefense):
    version = "1"
    params = [Param("eps", float, 4.0, source="test", gt=0, unit="px/255")]

    def budget(self):
        return self.p.eps


class Raises(_Fault):
    name = "fault-raise"
    summary = "protect() raises (test plugin)"

    def protect(self, subject, base, ctx):
        raise RuntimeError("boom inside protect")


class ReturnsNone(_Fault):
    name = "fault-none"
    summary = "protect() returns None (test plugin)"

    def protect(self, subject, base, ctx):
        return None


class NanBudget(_Fault):
    name = "fault-nan-budget"
    summary = "declares a NaN budget and perturbs by 64/255 (test plugin)"

    def budget(self):
        return math.nan

    def protect(self, subject, base, ctx):
        return [np.clip(i.astype(int) + 64, 0, 255).astype(np.uint8) for i in subject.train]


class NoBudget(NanBudget):
    name = "fault-no-budget"
    summary = "declares no budget (None) and perturbs by 64/255 (test plugin)"

    def budget(self):
        return None


class WrongShape(_Fault):
    name = "fault-shape"
    summary = "returns half-size images (test plugin)"

    def protect(self, subject, base, ctx):
        return [i[::2, ::2].copy() for i in subject.train]


class WrongCount(_Fault):
    name = "fault-count"
    summary = "returns one image too few (test plugin)"

    def protect(self, subject, base, ctx):
        return [i.copy() for i in subject.train[1:]]


class FloatImages(_Fault):
    name = "fault-float"
    summary = "returns float images full of NaN (test plugin)"

    def protect(self, subject, base, ctx):
        return [np.full(i.shape, np.nan) for i in subject.train]


class OverBudget(_Fault):
    name = "fault-over-budget"
    summary = "declares 4/255 and perturbs by 12/255 (test plugin)"

    def protect(self, subject, base, ctx):
        return [np.clip(i.astype(int) + 12, 0, 255).astype(np.uint8) for i in subject.train]


class PurifierRaises(Purifier):
    name = "fault-purifier"
    summary = "purify() raises (test plugin)"
    version = "1"

    def purify(self, images, ctx):
        raise ValueError("purifier exploded")


class PurifierNone(Purifier):
    name = "fault-purifier-none"
    summary = "purify() returns None (test plugin)"
    version = "1"

    def purify(self, images, ctx):
        return None


class AttackRaises(Attack):
    name = "fault-attack"
    summary = "personalize() raises (test plugin)"
    version = "1"

    def personalize(self, images, base, recipe, ctx, out_dir):
        raise MemoryError("out of memory in personalize")

    def generate(self, personalized, base, gen, recipe, ctx):
        return []


class MetricRaises(Metric):
    name = "fault-metric"
    summary = "compute() raises (test plugin)"
    version = "1"
    higher_is_better = True

    def compute(self, images, references, ctx):
        raise ZeroDivisionError("metric divided by zero")


class MetricNan(Metric):
    name = "fault-metric-nan"
    summary = "compute() returns NaN under status ok (test plugin)"
    version = "1"
    higher_is_better = True

    def compute(self, images, references, ctx):
        return MetricResult(value=math.nan)


class RaisesFor(_Fault):
    name = "fault-for"
    summary = "raises for the identity named by $FAULT_FOR, copies the others (test plugin: a matrix must go on)"

    def protect(self, subject, base, ctx):
        if subject.identity == os.environ.get("FAULT_FOR"):
            raise RuntimeError(f"cannot protect {subject.identity}")
        return [i.copy() for i in subject.train]
