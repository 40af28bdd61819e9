"""Trial files in an Optuna artifact store, so a run can be read from any machine.

Every trial uploads its files (``arch.json``, ``metrics.json``, ``tree.png`` and, for
search trials, ``routing.npz`` or ``candidates.json`` and ``inherited.safetensors``) to the study's artifact
store and records their ids in its ``artifacts`` user attribute. The store is named by URL in the
study's settings:

- a folder (``file:///abs/path`` or a plain path): the creator's ``runs/NAME/artifacts/`` by
  default, which optuna-dashboard reads with ``--artifact-dir``;
- ``s3://BUCKET``: an S3-compatible bucket for clusters (Optuna's ``Boto3ArtifactStore``; the
  endpoint and credentials come from boto3's usual settings, e.g. ``AWS_ENDPOINT_URL``,
  ``AWS_ACCESS_KEY_ID``), so workers on machines that share no disk, and the commands that read
  the run, all see the same files.

Readers take a trial's file from the run folder when it is there, else download it once into
``$MTNAS_CACHE_DIR/artifacts/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import optuna

from mtnas.core import MtnasError

__all__ = ["TRIAL_FILES", "artifact_cache", "fetch_trial_file", "open_artifact_store", "upload_trial_files"]

#: The files of a trial folder that travel through the store (name -> mimetype).
TRIAL_FILES = {
    "arch.json": "application/json",
    "metrics.json": "application/json",
    "tree.png": "image/png",
    "routing.npz": "application/octet-stream",
    "candidates.json": "application/json",
    "inherited.safetensors": "application/octet-stream",
}


def open_artifact_store(url: str, *, create: bool = False) -> Any:
    """The artifact store named by ``url`` (a folder path, ``file:///...`` or ``s3://BUCKET``).

    A folder is created only with ``create`` (by the process that creates the study): a worker on
    another machine never writes the creator's path on its own disk.
    """
    if url.startswith("s3://"):
        bucket = url[len("s3://"):].strip("/")
        if not bucket or "/" in bucket:
            raise MtnasError(f"artifact store {url!r}: expected s3://BUCKET (a bucket name, no path)")
        try:
            import boto3
        except ImportError:
            raise MtnasError("an s3:// artifact store needs boto3: pip install 'mtnas[s3]'") from None
        return optuna.artifacts.Boto3ArtifactStore(bucket, client=boto3.client("s3"))
    folder = Path(url[len("file://"):] if url.startswith("file://") else url)
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MtnasError(f"artifact store {url!r}: cannot create the folder: {exc.strerror}") from None
    elif not folder.is_dir():
        raise MtnasError(f"the study's trial files are in the folder {str(folder)!r} of the machine that created it, "
                         "which this machine does not have; for workers on other machines create the study with "
                         "an S3-compatible store: mtnas search ... --artifacts s3://BUCKET")
    return optuna.artifacts.FileSystemArtifactStore(str(folder))


def upload_trial_files(trial: optuna.Trial, folder: Path, store: Any) -> dict[str, str]:
    """Upload the trial files present in ``folder``; record and return ``{name: artifact id}``."""
    ids = {}
    for name, mimetype in TRIAL_FILES.items():
        path = folder / name
        if path.is_file():
            ids[name] = optuna.artifacts.upload_artifact(
                artifact_store=store, file_path=str(path), study_or_trial=trial, mimetype=mimetype
            )
    trial.set_user_attr("artifacts", ids)
    return ids


def artifact_cache() -> Path:
    """Where downloaded trial files are kept (``$MTNAS_CACHE_DIR/artifacts``)."""
    return Path(os.environ.get("MTNAS_CACHE_DIR", Path.home() / ".cache" / "mtnas")) / "artifacts"


def fetch_trial_file(study: optuna.Study, trial: optuna.trial.FrozenTrial, name: str, store_url: str) -> Path | None:
    """The trial's file ``name`` downloaded from the store (cached), or None when it has none."""
    artifact_id = (trial.user_attrs.get("artifacts") or {}).get(name)
    if artifact_id is None:
        return None
    target = artifact_cache() / study.study_name / f"{trial.number:04d}-{artifact_id}" / name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{name}.part")
        try:
            optuna.artifacts.download_artifact(artifact_store=open_artifact_store(store_url),
                                               file_path=str(partial), artifact_id=artifact_id)
        except Exception as exc:  # a missing folder or bucket, a network error: say where
            partial.unlink(missing_ok=True)
            raise MtnasError(f"trial {trial.number}: cannot fetch {name} from the artifact store {store_url!r}: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        os.replace(partial, target)
    return target
