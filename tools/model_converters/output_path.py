"""The output rule of the converters in this folder (they import it from beside them): never write over the input,
nor over an existing file unless asked."""
import argparse
import os.path as osp
from typing import List, Optional, Sequence

from fdclip_mm.converters.fd_to_backbone import resolve_checkpoint


def check_output_path(dst: str, sources: Sequence[str], overwrite: bool = False) -> None:
    """Refuse to write ``dst`` when it is one of ``sources`` or, without ``overwrite``, when it exists.

    Args:
        dst: The file about to be written.
        sources: The inputs; a work dir stands for the checkpoint its ``last_checkpoint`` names.
        overwrite: Whether an existing ``dst`` (that is not an input) may be replaced.

    Raises:
        FileExistsError: With the path and what to do instead.
    """
    for source in sources:
        resolved = resolve_checkpoint(source) if osp.isdir(source) else source
        if osp.exists(dst) and osp.exists(resolved) and osp.samefile(dst, resolved):
            raise FileExistsError(f'{dst} is the input {source}: refusing to write over it; choose another output')
    if osp.exists(dst) and not overwrite:
        raise FileExistsError(f'{dst} exists; pass --overwrite to replace it')


def parse_converter_args(parser: argparse.ArgumentParser,
                         argv: Optional[List[str]] = None,
                         src: str = 'src',
                         dst: str = 'dst') -> argparse.Namespace:
    """Add ``--overwrite`` to a converter's parser, parse, and apply :func:`check_output_path`.

    Args:
        parser: The converter's parser, with its ``src`` and ``dst`` arguments.
        argv: Arguments (default: the command line).
        src: Name of the input argument.
        dst: Name of the output argument.

    Returns:
        argparse.Namespace: The arguments; the parser exits with a message (status 2) on a refused output.
    """
    parser.add_argument('--overwrite', action='store_true', help=f'replace an existing {dst} (never the input)')
    args = parser.parse_args(argv)
    try:
        check_output_path(getattr(args, dst), [getattr(args, src)], args.overwrite)
    except FileExistsError as err:
        parser.error(str(err))
    return args
