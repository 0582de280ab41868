"""Fetching a registry model with huggingface-hub, and removing it.

Every download is checked against a sha256: the one pinned in the registry where we have it,
and always the one the hub reports for the file (the ETag of an LFS file is its sha256), so a
corrupted or tampered download is deleted and reported, never loaded.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import zipfile
from pathlib import Path

from .registry import ModelEntry, ModelError, entry, installed_path, models_dir

log = logging.getLogger(__name__)


def sha256_of(file_path: Path) -> str:
    digest = hashlib.sha256()
    with open(file_path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hub_sha256(model: ModelEntry, filename: str) -> str | None:
    """The sha256 the hub reports for an LFS file (its ETag), or None for small git files."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    metadata = get_hf_file_metadata(hf_hub_url(model.repo_of(filename), filename, revision=model.revision))
    etag = (metadata.etag or "").strip('"').removeprefix("W/").strip('"')
    return etag.lower() if re.fullmatch(r"[0-9a-fA-F]{64}", etag) else None


def pull(name: str, state_dir: Path, progress: bool = True) -> Path:
    """Download (resuming a partial download), verify and install a registry model."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    model = entry(name)
    folder = models_dir(state_dir) / model.name
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".verified"
    marker.unlink(missing_ok=True)
    pinned = dict(model.sha256)
    (enable_progress_bars if progress else disable_progress_bars)()
    for filename in model.files:
        repo_id = model.repo_of(filename)
        log.info("downloading %s from %s", filename, repo_id)
        try:
            downloaded = Path(
                hf_hub_download(
                    repo_id=repo_id,
                    filename=filename,
                    revision=model.revision,
                    local_dir=folder,
                )
            )
            hub_sha256 = _hub_sha256(model, filename)
        except (HfHubHTTPError, OSError, ValueError) as error:
            # The hub's errors run to several lines; the first says what happened.
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelError(f"{name}: cannot download {filename} from {repo_id}: {reason}") from None
        actual = sha256_of(downloaded)
        expected = {pinned.get(filename), hub_sha256} - {None}
        mismatched = [value for value in expected if value != actual]
        if mismatched:
            downloaded.unlink(missing_ok=True)
            raise ModelError(
                f"{name}: {filename} failed its checksum (sha256 {actual}, expected "
                f"{' and '.join(sorted(expected))}); the download was deleted, pull again"
            )
        if model.archive:
            _extract_model_folder(downloaded, folder / "model")
    marker.write_text("ok\n")
    return installed_path(model, state_dir)


def _extract_model_folder(archive: Path, target: Path) -> None:
    """Unzip an archive holding one top-level model folder into `target`."""
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(archive) as zipped:
        for member in zipped.namelist():
            # A member outside the staging folder would be a path traversal attack.
            if not (staging / member).resolve().is_relative_to(staging.resolve()):
                raise ModelError(f"{archive.name}: unsafe path in archive: {member}")
        zipped.extractall(staging)
    children = [child for child in staging.iterdir()]
    root = children[0] if len(children) == 1 and children[0].is_dir() else staging
    shutil.rmtree(target, ignore_errors=True)
    root.rename(target)
    shutil.rmtree(staging, ignore_errors=True)


def remove(name: str, state_dir: Path) -> bool:
    folder = models_dir(state_dir) / entry(name).name
    if not folder.exists():
        return False
    shutil.rmtree(folder)
    return True
