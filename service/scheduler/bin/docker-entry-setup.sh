# shellcheck shell=bash
# scheduler service: sourced by bash (as root) before the scheduler starts.
#
# The scheduler's /run is ${BOSUN_DATA}/run, and each other service's own /run is mounted
# read-only inside it at /run/<service> (docker-compose.yaml; docs/security.md). Clients
# find a service's request socket at /run/<service>-request.sock (`scheduler send mysql`,
# and on the host `socat - UNIX-CONNECT:data/run/mysql-request.sock`), so for every such
# mount this makes the relative link
#     /run/<service>-request.sock -> <service>/<service>-request.sock
# which resolves in this container and on the host alike. A service added to the stack
# with its own /run mounted here gets its link at the next start. A link is made before
# its service's socket exists (a request through it then fails as one to a missing socket
# would); a link whose directory is no longer mounted is removed; a real socket at that
# path (the one flat /run of earlier versions) is replaced; anything else is left alone,
# with a warning.

scheduler_log() { printf 'scheduler-setup: %s\n' "$*" >&2; }

scheduler_link_sockets() {
    local dir name link want have
    for dir in /run/*/; do
        name=${dir%/}
        name=${name##*/}
        # Service names as bosun takes them (common::name); a mount only, not any directory.
        [[ $name =~ ^[a-z0-9][a-z0-9_.-]{0,62}$ ]] || continue
        mountpoint -q "/run/$name" || continue
        link=/run/$name-request.sock
        want=$name/$name-request.sock
        have=$(readlink "$link" 2>/dev/null)
        [ "$have" = "$want" ] && continue
        if [ -e "$link" ] && [ ! -L "$link" ] && [ ! -S "$link" ]; then
            scheduler_log "warning: $link exists and is not a socket or a link; left alone (requests to $name go to it)"
            continue
        fi
        # A new link renamed over the old path: never a moment without one.
        ln -sfn "$want" "$link.tmp.$$" && mv -fT "$link.tmp.$$" "$link" ||
            { rm -f "$link.tmp.$$"; scheduler_log "error: cannot make $link -> $want"; return 1; }
        scheduler_log "$link -> $want"
    done
    # Links of services no longer mounted here.
    for link in /run/*-request.sock; do
        [ -L "$link" ] || continue
        have=$(readlink "$link")
        name=${have%%/*}
        [ "$have" = "$name/$name-request.sock" ] || continue
        mountpoint -q "/run/$name" && continue
        rm -f "$link" && scheduler_log "removed $link (no /run/$name mounted)"
    done
}

scheduler_link_sockets
