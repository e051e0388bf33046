"""YAML feature definitions: position-aware loading and strict models."""
