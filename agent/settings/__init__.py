"""The YAML configuration and development plans, loaded and validated once."""
