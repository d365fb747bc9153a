#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (report.html, the labelling page) when it is
# missing and apt-get can run; otherwise those tests skip and say why.
set -uo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else exit 0; fi
    $sudo apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
        || { $sudo apt-get update >/dev/null 2>&1 && $sudo apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; } \
        || echo "browser.sh: could not install chromium; the browser tests will skip" >&2
fi
exit 0
