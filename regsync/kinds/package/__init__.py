"""Python packages: simple indexes in, requirement closures per target environment, uploads out."""
