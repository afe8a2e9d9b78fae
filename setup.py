"""Package list for the `vireid` distribution.

The folders stay as the architecture names them (`sdk/`, `training/`, `export/`) while the import
names are `vireid`, `vireid.training` and `vireid.export`; pyproject.toml holds that mapping and this
file only enumerates the sub-packages so new folders are picked up without editing a list.
"""

from setuptools import find_packages, setup

ROOTS = {
    "vireid": "sdk",
    "vireid.training": "training",
    "vireid.export": "export",
    "vireid.training.configs": "configs",  # the YAML configs, shipped as package data
}


def _packages() -> list[str]:
    found = []
    for name, folder in ROOTS.items():
        found.append(name)
        found.extend(f"{name}.{sub}" for sub in find_packages(folder))
    return found


setup(packages=_packages())
