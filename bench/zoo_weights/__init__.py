"""Weights the zoo's own pre-training made, shipped so the build need not repeat it (bench/zoo.py SHIPPED)."""
