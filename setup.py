"""The one build setting pyproject.toml cannot state: the built-in search spaces ride in the wheel.

``search_spaces/*.yaml`` at the top of the repository stays their only source. ``package_dir``
maps it to the package ``mtnas.space.builtin``, so a wheel (or any non-editable install) carries
a copy as package data in ``mtnas/space/builtin/``; ``mtnas.space`` reads that copy when it is
there and the checkout's ``search_spaces/`` otherwise (an editable install).
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["mtnas*"]), "mtnas.space.builtin"],
    package_dir={"mtnas.space.builtin": "search_spaces"},
    package_data={"mtnas.space.builtin": ["*.yaml"]},
)
