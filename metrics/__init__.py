"""Built-in metrics plugins; each module registers through an entry point in pyproject.toml."""
