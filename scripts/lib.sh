# Shared by the set-up scripts (sourced, not run).

# install_missing WHO PACKAGE...: installs, with apt, those of the Debian packages PACKAGE... that
# are not installed, and leaves their names in MISSING. Without root it installs nothing, says
# what is missing and how to install it, and fails. WHO prefixes the messages.
install_missing() {
    local who=$1 p
    shift
    MISSING=()
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || MISSING+=("$p")
    done
    [ ${#MISSING[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "$who: these packages are missing and installing them needs root: ${MISSING[*]}" >&2
        echo "$who:   sudo apt-get install ${MISSING[*]}" >&2
        return 1
    fi
    echo "$who: installing ${MISSING[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >/dev/null
}
