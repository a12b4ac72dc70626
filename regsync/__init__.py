"""regsync: replicate images and packages into private registries, verified and audited."""

__version__ = "0.1.0"
