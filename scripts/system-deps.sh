#!/usr/bin/env bash
# Debian/Ubuntu packages the training stack needs: FFmpeg libraries (torchaudio 2.9 reads audio through
# torchcodec, which loads them) and espeak-ng (the demo and tests speak their tiny dataset with it).
set -euo pipefail
need=()
for pkg in ffmpeg espeak-ng; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
