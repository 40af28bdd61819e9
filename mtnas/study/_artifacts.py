"""Trial files in an Optuna artifact store, so a run can be read from any machine.

Every trial uploads its files (``arch.json``, ``metrics.json``, ``tree.png`` and, for
search trials, ``routing.npz`` or ``candidates.json`` and ``inherited.safetensors``) to the study's artifact
store and records their ids in its ``artifacts`` user attribute. The store is named by URL in the
study's settings:

- a folder (``file:///abs/path`` or a plain path, recorded absolute: :func:`absolute_store`):
  the creator's ``runs/NAME/artifacts/`` by default, which optuna-dashboard reads with
  ``--artifact-dir``;
- ``s3://BUCKET``: an S3-compatible bucket for clusters (Optuna's ``Boto3ArtifactStore``; the
  endpoint and credentials come from boto3's usual settings, e.g. ``AWS_ENDPOINT_URL``,
  ``AWS_ACCESS_KEY_ID``), so workers on machines that share no disk, and the commands that read
  the run, all see the same files.

Any other scheme (``gs://``, ``http://``, ...) is refused: it is not a folder named ``gs:``. The
store is checked when a study starts and when a worker joins it (:func:`check_artifact_store`:
reachable, the bucket there, writable), so a wrong endpoint or bucket is one line before the
first trial, not a traceback at its first upload.

Readers take a trial's file from the run folder when it is there, else download it once into
``$MTNAS_CACHE_DIR/artifacts/STUDY/NNNN-ID/``. The study name and the artifact id come from the
storage, so both are checked to be names, and the path is checked to stay inside the cache,
before anything is created.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import uuid
from pathlib import Path
from typing import Any

import optuna

from mtnas.core import MtnasError, cache_dir, first_line, inside, is_folder_name, short_repr

__all__ = [
    "ARTIFACT_ID",
    "TRIAL_FILES",
    "absolute_store",
    "artifact_cache",
    "check_artifact_store",
    "fetch_trial_file",
    "open_artifact_store",
    "store_folder",
    "upload_trial_files",
]

#: The files of a trial folder that travel through the store (name -> mimetype).
TRIAL_FILES = {
    "arch.json": "application/json",
    "metrics.json": "application/json",
    "tree.png": "image/png",
    "routing.npz": "application/octet-stream",
    "candidates.json": "application/json",
    "inherited.safetensors": "application/octet-stream",
}


#: An artifact id as Optuna makes them (a UUID); anything else in a stored study is refused.
ARTIFACT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
#: ``s3://BUCKET``: a bucket name as S3 allows them.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def _s3_bucket(url: str) -> str:
    bucket = url[len("s3://"):].rstrip("/")
    if not _BUCKET.fullmatch(bucket):
        raise MtnasError(f"artifact store {short_repr(url)}: expected s3://BUCKET (a bucket name of 3-63 lower-case "
                         "letters, digits, '.' or '-'; no path)")
    return bucket


def _s3_client() -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise MtnasError("an s3:// artifact store needs boto3: pip install 'mtnas[s3]'") from None
    # seconds, not minutes, to find out that an endpoint does not answer
    return boto3.client("s3", config=Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3}))


def store_folder(url: str) -> str | None:
    """The folder of a folder store (a plain path or ``file:///...``); None for a bucket or another scheme."""
    if url.startswith("file://"):
        return url[len("file://"):]
    return None if _SCHEME.match(url) else url


def absolute_store(url: str) -> str:
    """``url`` with a folder store's path made absolute against the current folder, so every
    command and worker finds it from any folder (``./af`` -> ``/here/af``); a bucket as it is."""
    folder = store_folder(url)
    return url if folder is None or url.startswith("file://") or not folder else os.path.abspath(folder)


def open_artifact_store(url: str, *, create: bool = False) -> Any:
    """The artifact store named by ``url`` (a folder path, ``file:///...`` or ``s3://BUCKET``).

    A folder is created only with ``create`` (by the process that creates the study): a worker on
    another machine never writes the creator's path on its own disk.

    Raises:
        MtnasError: another scheme, a bucket name that is not one, a missing folder.
    """
    scheme = _SCHEME.match(url)
    if scheme is not None and scheme[1] not in ("s3", "file"):
        raise MtnasError(f"artifact store {short_repr(url)}: unknown scheme {scheme[1]!r}; use s3://BUCKET (an "
                         "S3-compatible bucket) or a folder path")
    if url.startswith("s3://"):
        return optuna.artifacts.Boto3ArtifactStore(_s3_bucket(url), client=_s3_client())
    if url.startswith("file://") and not url.startswith("file:///"):
        raise MtnasError(f"artifact store {short_repr(url)}: a file URL names an absolute folder: file:///abs/path")
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


def check_artifact_store(url: str, *, create: bool = False) -> Any:
    """The store of ``url`` (see :func:`open_artifact_store`), after writing a probe object to it and
    removing it again: the endpoint answers, the bucket (or folder) is there, this machine may
    write to it. One error line says which of these failed."""
    store = open_artifact_store(url, create=create)
    probe = f".mtnas-probe-{uuid.uuid4().hex}"
    try:
        store.write(probe, io.BytesIO(b"mtnas"))
        store.remove(probe)
    except Exception as exc:  # botocore, OSError: say what failed, not where in botocore
        raise MtnasError(f"artifact store {short_repr(url)}: {_store_problem(exc, url)}") from None
    return store


def _store_problem(exc: BaseException, url: str) -> str:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    name = type(exc).__name__
    if code in ("NoSuchBucket", "404"):
        return "the bucket does not exist; create it (e.g. aws s3 mb s3://BUCKET) or name another"
    if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return f"not allowed to write to it ({code}); check the credentials (AWS_ACCESS_KEY_ID, ...) and the policy"
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ReadTimeoutError"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or "the default endpoint"
        return f"cannot reach {endpoint} ({first_line(exc)}); check AWS_ENDPOINT_URL and the network"
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return "no credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile)"
    if isinstance(exc, OSError):
        return f"cannot write to the folder ({exc.strerror or first_line(exc)})"
    return f"{name}: {first_line(exc)}"


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
    return cache_dir() / "artifacts"


def _cache_folder(study_name: str) -> str:
    """The cache folder of a study: its name when that is one plain folder name, else a digest of it."""
    if is_folder_name(study_name):
        return study_name
    return "study-" + hashlib.sha256(study_name.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def fetch_trial_file(study: optuna.Study, trial: optuna.trial.FrozenTrial, name: str, store_url: str) -> Path | None:
    """The trial's file ``name`` downloaded from the store (cached), or None when it has none."""
    if name not in TRIAL_FILES:
        raise ValueError(f"not a trial file: {name!r}")
    artifact_id = (trial.user_attrs.get("artifacts") or {}).get(name)
    if artifact_id is None:
        return None
    if not isinstance(artifact_id, str) or not ARTIFACT_ID.fullmatch(artifact_id):
        raise MtnasError(f"trial {trial.number}: the artifact id of {name} is {short_repr(artifact_id, 60)}, not an "
                         "artifact id; the study's storage was damaged or edited")
    cache = artifact_cache()
    target = inside(cache, _cache_folder(study.study_name), f"{trial.number:04d}-{artifact_id}", name)
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
