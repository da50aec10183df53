"""scripts/downloads.py: the cache folder, and a file already downloaded is kept only with its published hash."""
import hashlib

import pytest

from ..helpers.scripts import load_script

downloads = load_script('scripts/downloads.py')


def test_the_cache_is_the_argument_then_the_environment_then_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv('FDCLIP_CACHE', str(tmp_path / 'env'))
    assert downloads.download_dir(str(tmp_path / 'arg')) == str(tmp_path / 'arg')
    assert downloads.download_dir() == str(tmp_path / 'env')
    monkeypatch.delenv('FDCLIP_CACHE')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert downloads.download_dir() == str(tmp_path / 'home' / '.cache' / 'fdclip_mm' / 'downloads')


def test_a_downloaded_file_is_used_with_its_hash_and_refused_with_another(tmp_path, capsys):
    wheel, deb = tmp_path / 'pkg-1.0-py3-none-any.whl', tmp_path / 'pkg_1.0_all.deb'
    wheel.write_bytes(b'wheel bytes')
    deb.write_bytes(b'deb bytes')
    wheel_hash, deb_hash = (hashlib.sha256(p.read_bytes()).hexdigest() for p in (wheel, deb))
    assert downloads.sha256(str(wheel)) == wheel_hash
    assert downloads.pip_download('pkg==1.0', str(wheel), wheel_hash) == str(wheel)
    assert downloads.apt_download('pkg', deb.name, deb_hash, str(tmp_path)) == str(deb)
    assert capsys.readouterr().out.count('already downloaded') == 2
    with pytest.raises(downloads.StepError, match=f'has SHA-256 {wheel_hash}, expected {deb_hash}; delete it'):
        downloads.pip_download('pkg==1.0', str(wheel), deb_hash)
    with pytest.raises(downloads.StepError, match=f'has SHA-256 {deb_hash}, expected {wheel_hash}; delete it'):
        downloads.apt_download('pkg', deb.name, wheel_hash, str(tmp_path))
