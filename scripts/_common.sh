# Shared by scripts/test and scripts/serve (sourced, not executed).
# Creates or reuses the virtualenv in .venv and installs the package into it.

VENV_DIR="${VENV_DIR:-.venv}"

log() { printf '==> %s\n' "$*" >&2; }

# The interpreter for a new virtualenv: python3.11 (the project's target), else python3.
find_python() {
    if command -v python3.11 >/dev/null 2>&1 && python3.11 -c 'import venv, ensurepip' 2>/dev/null; then
        echo python3.11
    elif command -v python3 >/dev/null 2>&1; then
        echo python3
    else
        echo "error: no python3 found" >&2
        return 1
    fi
}

# ensure_venv [EXTRA]: .venv with `pip install -e '.[EXTRA]'`. Skipped when pyproject.toml and
# the interpreter are unchanged since the last successful install of that extra (an install
# with the test extra also counts for a plain one). The install is editable, so source changes
# never need a reinstall.
ensure_venv() {
    local extra="${1:-}" python spec digest
    if ! "$VENV_DIR/bin/python" -c 'import sys' >/dev/null 2>&1; then
        python="$(find_python)"
        log "creating virtualenv $VENV_DIR with $(command -v "$python")"
        rm -rf "$VENV_DIR"
        "$python" -m venv "$VENV_DIR"
    fi
    digest="$( { cat pyproject.toml; "$VENV_DIR/bin/python" -VV; } | sha256sum | cut -d' ' -f1)"
    if grep -qsx "$digest" "$VENV_DIR/.installed-${extra:-base}" \
        || { [ -z "$extra" ] && grep -qsx "$digest" "$VENV_DIR/.installed-test"; }; then
        return 0
    fi
    spec="."
    if [ -n "$extra" ]; then spec=".[$extra]"; fi
    log "installing $spec into $VENV_DIR"
    "$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec"
    echo "$digest" >"$VENV_DIR/.installed-${extra:-base}"
}
