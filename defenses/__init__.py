"""Built-in defenses plugins; each module registers through an entry point in pyproject.toml."""
