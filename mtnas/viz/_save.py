"""Writing a figure: atomically (a reader sees the old picture or the new one), and a failed write
(a full disk, say) names the picture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtnas.core import naming


def save_figure(fig: Any, path: str | Path, *, dpi: int = 100, **options: Any) -> Path:
    """Write matplotlib ``fig`` to ``path`` (its format by the suffix) through a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    with naming(path):
        fig.savefig(tmp, dpi=dpi, **options)
        tmp.replace(path)
    return path
