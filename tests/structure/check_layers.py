#!/usr/bin/env python3
"""The layers, as the #include lines say them (docs/design.md, "Layers").

  include/coring/  public headers: include only <coring/...> and system headers.
  alloc/           frame allocation: public headers and its own.
  src/             the execution model and the io_context front end: public
                   headers and src/; never ring/.
  ring/            the backends: public headers, their own headers, and from
                   src/ only the seam, io_seam.h.
  examples/        programs a user copies: public headers and their own.

Also: every public header is in include/coring/meson.build's public_headers
(the list the header tests compile one by one). Prints each violation and
exits 1 if there is any.

usage: check_layers.py SOURCE_ROOT
"""
import os
import re
import sys

root = sys.argv[1]
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def sources(folder):
    for dirpath, _, names in os.walk(os.path.join(root, folder)):
        for n in sorted(names):
            if n.endswith(('.c', '.h')):
                yield os.path.join(dirpath, n)


def local(folder):
    return {n for n in os.listdir(os.path.join(root, folder)) if n.endswith('.h')}


public = local('include/coring')
src_headers = local('src')
rules = {
    # folder: (quoted includes allowed besides coring/*.h)
    'include/coring': set(),
    'alloc': local('alloc'),
    'src': src_headers,
    'ring': local('ring') | {'io_seam.h'},
    'examples': local('examples'),
}

bad = []
for folder, allowed in rules.items():
    for path in sources(folder):
        text = open(path, encoding='utf-8').read()
        for kind, name in INCLUDE.findall(text):
            if name.startswith('coring/') and name[len('coring/'):] in public | {'config.h'}:
                continue
            if kind == '<' and not name.startswith('coring/'):
                continue  # a system header
            if kind == '"' and name in allowed:
                continue
            if folder == 'include/coring' and kind == '"' and name.startswith('coring/'):
                continue
            close = '>' if kind == '<' else '"'
            bad.append(f'{os.path.relpath(path, root)}: #include {kind}{name}{close} crosses a layer')

meson = open(os.path.join(root, 'include/coring/meson.build'), encoding='utf-8').read()
listed = set(re.findall(r"'([a-z_]+\.h)'", meson.split('public_headers', 1)[1]))
for h in sorted(public - listed):
    bad.append(f'include/coring/{h}: missing from public_headers in include/coring/meson.build')

for line in bad:
    print(line)
print(f'{len(bad)} layer violation(s)')
sys.exit(1 if bad else 0)
