"""What the README and the docs pages name: paths, commands, registered types, make targets, configs, links.

Pure text functions (no torch, no mmengine), shared by ``test_docs_commands.py``.
"""
import glob
import itertools
import os.path as osp
import re
import shlex
from typing import Dict, Iterator, List, NamedTuple, Set, Tuple

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DOCS = osp.join(REPO, 'docs', 'en')

# Top-level folders whose paths the docs name and the test checks.
CHECKED_ROOTS = ('tools', 'scripts', 'benchmarks', 'configs', 'fdclip_mm')

# Paths the docs name that belong to another project, not to this repository (checked to be introduced as such).
FOREIGN_PATHS = {
    'tools/dataset_converters/nyu.py': "mmseg's",  # the NYU layout mmseg's converter writes
}

FENCE = re.compile(
    r'^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$', re.M | re.S)
CODE_SPAN = re.compile(r'(?<!`)`([^`\n]+(?:\n[^`\n]+)*?)`(?!`)')
LINK = re.compile(r'(?<!!)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$', re.M)
PATH = re.compile(r'(?<![\w./:-])((?:%s)/[\w./{},*<>+-]*)' % '|'.join(CHECKED_ROOTS))
OUR_NAME = re.compile(r'(?<![\w.])fdclip_mm\.([A-Za-z_][\w.]*\w)')


class Page(NamedTuple):
    """One Markdown file: its path relative to the repository and its text."""

    rel: str
    text: str


class Command(NamedTuple):
    """One shell command of a page (continuation lines joined, comment dropped)."""

    page: str
    line: str
    argv: Tuple[str, ...]


def pages() -> List[Page]:
    """The README and every Markdown page under ``docs/en`` (the build folder excluded)."""
    files = [osp.join(REPO, 'README.md')] + sorted(
        p for p in glob.glob(osp.join(DOCS, '**', '*.md'), recursive=True) if '_build' not in p.split(osp.sep))
    return [Page(osp.relpath(p, REPO), open(p, encoding='utf-8').read()) for p in files]


def fences(text: str) -> Iterator[Tuple[str, str]]:
    """``(info, body)`` of every fenced code block, the body dedented by the fence's indentation."""
    for m in FENCE.finditer(text):
        indent = len(m.group('indent'))
        body = '\n'.join(line[indent:] if line[:indent].strip() == '' else line
                         for line in m.group('body').splitlines())
        yield m.group('info').strip(), body


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub('', text)


def code_spans(text: str) -> List[str]:
    """Inline code spans outside fenced blocks (a span may wrap over a line break)."""
    return [' '.join(s.split()) for s in CODE_SPAN.findall(prose(text))]


def code_texts(text: str) -> List[str]:
    """Every code span and every fenced block's body: where the docs name paths, types and commands."""
    return code_spans(text) + [body for _, body in fences(text)]


def expand_braces(path: str) -> List[str]:
    """``a-{x,y}.py`` -> ``['a-x.py', 'a-y.py']`` (several groups multiply)."""
    parts = re.split(r'\{([^{}]*)\}', path)
    choices = [[p] if i % 2 == 0 else p.split(',') for i, p in enumerate(parts)]
    return [''.join(c) for c in itertools.product(*choices)]


def paths(text: str) -> Set[str]:
    """Repository paths named in code: ``tools/...``, ``scripts/...``, ``benchmarks/...``, ``configs/...``."""
    found = set()
    for code in code_texts(text):
        for m in PATH.finditer(code):
            path = m.group(1).rstrip('.,:;')
            if path.endswith(('/...', '/*')) or not path:
                path = path.rsplit('/', 1)[0] + '/'
            found.add(path)
    return found


def resolve_path(path: str) -> List[str]:
    """Files or folders of the repository a named path stands for ([] when none).

    Brace groups expand; ``...``, ``*`` and ``<placeholder>`` match any characters.
    """
    hits = []
    for one in expand_braces(path):
        pattern = re.sub(r'<[^>]*>', '*', one.replace('...', '*'))
        if '*' in pattern:
            hits += glob.glob(osp.join(REPO, pattern))
        elif osp.exists(osp.join(REPO, one)):
            hits.append(osp.join(REPO, one))
        else:
            return []
    return hits


def config_files(text: str) -> Set[str]:
    """Config files (``configs/**.py``) named in code, placeholders resolved."""
    found = set()
    for path in paths(text):
        if path.startswith('configs/') and path.endswith('.py'):
            found.update(osp.relpath(p, REPO) for p in resolve_path(path) if p.endswith('.py'))
    return found


def shell_lines(text: str) -> Iterator[str]:
    """Command lines of bash blocks and of code spans that start with a command."""
    for info, body in fences(text):
        if info.split(' ')[0] in ('bash', 'sh', 'shell', 'console'):
            joined = re.sub(r'\\\n\s*', ' ', body)
            for line in joined.splitlines():
                yield line
    for span in code_spans(text):
        if re.match(r'(python3?|bash|make|mim) ', span):
            yield span


def commands(page: Page) -> List[Command]:
    """Every command of a page, split at ``;``, ``&&`` and ``|``, comments and env assignments removed."""
    found = []
    for line in shell_lines(page.text):
        line = re.sub(r'(^|\s)#.*$', '', line).strip()
        for part in re.split(r'\s*(?:;|&&|\|\|?)\s*', line):
            try:
                argv = shlex.split(part)
            except ValueError:
                argv = part.split()
            while argv and re.match(r'^[A-Z_][A-Z0-9_]*=', argv[0]):
                argv = argv[1:]
            if argv:
                found.append(Command(page.rel, part, tuple(argv)))
    return found


def python_tools(cmds: List[Command]) -> Dict[str, str]:
    """``{script: page}`` of our Python scripts run as ``python SCRIPT ...``."""
    found = {}
    for cmd in cmds:
        argv = cmd.argv
        if argv[0] in ('python', 'python3', '.venv/bin/python') and len(argv) > 1 and argv[1].endswith('.py') \
                and argv[1].split('/')[0] in CHECKED_ROOTS:
            found.setdefault(argv[1], cmd.page)
    return found


def shell_tools(cmds: List[Command]) -> Dict[str, str]:
    """``{script: page}`` of our shell scripts run as ``bash SCRIPT`` or ``SCRIPT``."""
    found = {}
    for cmd in cmds:
        argv = cmd.argv
        script = argv[1] if argv[0] == 'bash' and len(argv) > 1 else argv[0]
        if script.endswith('.sh') and script.split('/')[0] in CHECKED_ROOTS:
            found.setdefault(script, cmd.page)
    return found


def make_targets(cmds: List[Command]) -> Dict[str, str]:
    """``{target: page}`` of every ``make TARGET`` (options such as ``-j2`` skipped)."""
    found = {}
    for cmd in cmds:
        if cmd.argv[0] == 'make':
            for arg in cmd.argv[1:]:
                if not arg.startswith('-') and '=' not in arg:
                    found.setdefault(arg, cmd.page)
    return found


def makefile_targets() -> Set[str]:
    """Targets the Makefile defines."""
    text = open(osp.join(REPO, 'Makefile'), encoding='utf-8').read()
    return set(re.findall(r'^([A-Za-z0-9_.-]+)\s*:(?!=)', text, re.M))


def our_names(text: str) -> Set[str]:
    """``X`` of every ``fdclip_mm.X`` named in code (``type='fdclip_mm.FDViT'``, ``fdclip_mm.models.x``)."""
    return {m.group(1) for code in code_texts(text) for m in OUR_NAME.finditer(code)}


def slug(heading: str) -> str:
    """The anchor of a heading, as myst-parser (``myst_heading_anchors``) and GitHub write it."""
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading)
    text = re.sub(r'[^\w\- ]', '', text.strip().lower())
    return text.replace(' ', '-')


def anchors(text: str) -> Set[str]:
    """Anchors of the headings of a page (outside code blocks)."""
    return {slug(m.group(2)) for m in HEADING.finditer(prose(text))}


def links(page: Page) -> List[str]:
    """Relative link targets of a page (outside code; web and mail links left out)."""
    text = prose(page.text)
    text = CODE_SPAN.sub('', text)
    return [m.group('target') for m in LINK.finditer(text) if not re.match(r'[a-z]+:', m.group('target'))]
