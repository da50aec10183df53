# Old name, kept loadable: the README's demo command of earlier versions. The FD student is now spelt `fdvit-*`
# in every folder (docs/en/notes/changelog.md); mmengine warns and names the new file.
_base_ = ['./fd_dinov2-vits14_fdvit-t14-6l_demo.py']
_deprecation_ = dict(
    expected='configs/demo/fd_dinov2-vits14_fdvit-t14-6l_demo.py', reference='docs/en/notes/changelog.md')
