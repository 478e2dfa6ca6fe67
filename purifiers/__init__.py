"""Built-in purifiers plugins; each module registers through an entry point in pyproject.toml."""
