"""Default configuration shipped with the package (taxonomy, runtime settings)."""
