"""Dataset cards (one YAML file per dataset). See bench/data.py for the format."""
