"""``last_checkpoint`` names a file of its own work dir: a copied work dir resumes from its own files."""
import shutil

import pytest

from fdclip_mm.checkpoint import read_last_checkpoint


def test_the_pointer_resolves_inside_its_work_dir(tmp_path):
    run = tmp_path / 'a'
    run.mkdir()
    assert read_last_checkpoint(str(run)) is None  # no pointer
    (run / 'last_checkpoint').write_text('')
    assert read_last_checkpoint(str(run)) is None  # an empty one
    (run / 'epoch_1.pth').write_bytes(b'x')
    (run / 'last_checkpoint').write_text(str(run / 'epoch_1.pth'))
    assert read_last_checkpoint(str(run)) == str(run / 'epoch_1.pth')
    (run / 'last_checkpoint').write_text('epoch_1.pth')  # a relative name: inside its work dir
    assert read_last_checkpoint(str(run)) == str(run / 'epoch_1.pth')

    (run / 'last_checkpoint').write_text(str(run / 'epoch_1.pth'))
    copy = tmp_path / 'b'
    shutil.copytree(run, copy)  # its pointer names a/epoch_1.pth
    assert read_last_checkpoint(str(copy)) == str(copy / 'epoch_1.pth')

    (copy / 'epoch_1.pth').unlink()
    with pytest.raises(
            ValueError,
            match=rf'{copy}/last_checkpoint names {run}/epoch_1.pth, which is outside {copy} .*'
            rf'epoch_1.pth is not in {copy}.*--resume {run}/epoch_1.pth'):
        read_last_checkpoint(str(copy))
