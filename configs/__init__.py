"""The bundled training configs (YAML package data), so that `vireid train --config demo_cpu` works after
`pip install vireid[train]`, away from a checkout (`vireid.training.config.bundled_configs()`)."""
