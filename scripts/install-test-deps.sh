#!/usr/bin/env bash
# Installs the system tools some integration tests use (Debian/Ubuntu, as root). Without
# them those tests print `SKIPPED: needs ...` and pass; with NAVIXY_ALERTS_REQUIRE_ALL=1
# (as .ci/run sets) they fail instead. Everything else the tests need, they bring.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends chromium chromium-driver postgresql

# Python packages some tests or scripts use go here, e.g.:
# python3 -m pip install --quiet --disable-pip-version-check PACKAGE==VERSION
