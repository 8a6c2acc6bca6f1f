#!/bin/sh
# The init container of every tunesched pod runs this as root (capability CHOWN only), before the
# unprivileged tunesched user (uid 10001) starts.
#
# 1. Secrets. Kubernetes writes a Secret volume's files owned by root, so at mode 0400 the
#    tunesched user could not read them, and fsGroup would add group bits (0440) that
#    `read_secret_file` refuses (token and users files must be owner-only). So each Secret is
#    mounted read-only (defaultMode 0400) into this container only, at $SECRETS_FROM/NAME, and
#    every file is copied to $SECRETS_TO/NAME/FILE (an in-memory emptyDir the main container
#    mounts read-only), mode 0400, owned by $OWNER.
# 2. Data directories ($DATA_DIRS: the scheduler's state volume, a runner's work dir on the node):
#    handed to $OWNER, recursively only when the top directory is not already theirs (a fresh
#    volume, or one restored as root).
set -eu

SECRETS_FROM=${SECRETS_FROM:-/secrets}
SECRETS_TO=${SECRETS_TO:-/run/tunesched/secrets}
OWNER=${OWNER:-10001:10001}
DATA_DIRS=${DATA_DIRS:-}

umask 077
for dir in "$SECRETS_FROM"/*/; do
    [ -d "$dir" ] || continue  # no Secret mounted
    name=$(basename "$dir")
    mkdir -p -m 0755 "$SECRETS_TO/$name"
    # "$dir"* skips the volume's ..data links; each key is a link into them, which cp follows
    for src in "$dir"*; do
        [ -f "$src" ] || continue
        dst="$SECRETS_TO/$name/$(basename "$src")"
        rm -f "$dst"  # a restarted pod keeps its emptyDir: replace, do not write through
        cp "$src" "$dst"
        chmod 0400 "$dst"
        chown "$OWNER" "$dst"
    done
done

for dir in $DATA_DIRS; do
    mkdir -p "$dir"
    if [ "$(stat -c %u:%g "$dir")" != "$OWNER" ]; then
        chown -R "$OWNER" "$dir"
    fi
done
