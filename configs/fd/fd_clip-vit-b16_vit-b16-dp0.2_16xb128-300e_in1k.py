# Old name, kept loadable: the README's distillation command of earlier versions. The FD student is now spelt
# `fdvit-*` in every folder (docs/en/notes/changelog.md); mmengine warns and names the new file.
_base_ = ['./fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py']
_deprecation_ = dict(
    expected='configs/fd/fd_clip-vit-b16_fdvit-b16-dp0.2_16xb128-300e_in1k.py', reference='docs/en/notes/changelog.md')
