#!/usr/bin/env python3
"""Compiles one source that must not compile, and checks why.

usage: compile_fail.py EXPECTED_REGEX COMPILER [ARGS...]

Runs COMPILER ARGS...; passes only if the compiler fails and its messages
match EXPECTED_REGEX (so a failure for another reason does not count).
"""
import re
import subprocess
import sys

expected, cmd = sys.argv[1], sys.argv[2:]
p = subprocess.run(cmd, capture_output=True, text=True)
out = p.stdout + p.stderr
if p.returncode == 0:
    print('compiled, but must not:', ' '.join(cmd))
    sys.exit(1)
if not re.search(expected, out):
    print(f'failed, but not with /{expected}/:\n{out}')
    sys.exit(1)
print(f'refused as expected (/{expected}/)')
