#!/bin/sh
# Runs an example and checks that its output is exactly the expected text.
out=$("$1") || { echo "exit status $?"; exit 1; }
[ "$out" = "$2" ] || { echo "expected '$2', got '$out'"; exit 1; }
