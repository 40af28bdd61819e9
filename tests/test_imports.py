"""mtnas's modules import in one direction: no module is part of an import cycle (the backbone
modules were: the registry imported the library backbones that import the registry)."""

from __future__ import annotations

import grimp


def test_no_module_of_mtnas_is_in_an_import_cycle() -> None:
    graph = grimp.build_graph("mtnas")
    cycles = sorted({tuple(sorted((module, imported))) for module in graph.modules
                     for imported in graph.find_modules_directly_imported_by(module)
                     if graph.find_shortest_chain(imported, module)})
    assert cycles == [], cycles


def test_the_library_backbones_are_registered_beside_mtnas_own() -> None:
    from mtnas.nn import BACKBONES

    assert BACKBONES.names() == ["conv", "mlp", "resnet", "timm", "torchvision"]
