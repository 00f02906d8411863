#!/bin/sh
# Add RLHF Workbench to the desktop's application menu, for this user, from wherever this folder
# was unpacked (run it again after moving the folder). Removes the entry with --remove.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
icons="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/scalable/apps"
if [ "${1:-}" = "--remove" ]; then
    rm -f "$apps/rlhf-workbench.desktop" "$icons/rlhf-workbench.svg"
    echo "removed the menu entry"
    exit 0
fi
mkdir -p "$apps" "$icons"
cp "$here/rlhf-workbench.svg" "$icons/rlhf-workbench.svg"
# The entry's Exec names the program in this folder (quoted: the path may hold spaces).
sed "s|^Exec=.*|Exec=\"$here/rlhf-workbench\" %f|" "$here/rlhf-workbench.desktop" > "$apps/rlhf-workbench.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$apps" >/dev/null 2>&1 || true
echo "added RLHF Workbench to the application menu ($apps/rlhf-workbench.desktop)"
