# bosun: one image for every service of the stack (DESIGN.md section 1).
#
#   build    the three binaries, statically linked, release profile, from the workspace crates only
#   runtime  Debian trixie-slim + the LAMP packages + /usr/local/sbin/{supervisor,listener,scheduler}
#
# Each container gets its personality from two read-only mounts (service/<name>/bin on
# /usr/local/bin, service/<name>/conf on /usr/local/conf); see docker-compose.yaml.
#
# Works with the legacy builder and with BuildKit: no RUN --mount, no heredocs.
# Offline (no registry): scripts/offline-images makes both FROM tags locally first.
# Build args: RUST_IMAGE and BASE_IMAGE, the two FROM tags (defaults: the public ones).

ARG RUST_IMAGE=rust:1-slim-trixie
ARG BASE_IMAGE=debian:trixie-slim

FROM ${RUST_IMAGE} AS build
# Statically linked (static-pie: ASLR kept), so that the three binaries run in any image,
# busybox or distroless included (DESIGN.md section 8; README "Use bosun in your own
# image"). The target is named so that RUSTFLAGS do not reach build scripts and proc macros.
ENV CARGO_TERM_COLOR=never \
    RUSTFLAGS="-C target-feature=+crt-static"
WORKDIR /src
# The dependencies first, in a layer of their own, built against stub sources: a change to
# bosun's own code then rebuilds only bosun's crates. `cargo clean -p` drops the stubs'
# artifacts, so the real sources are always compiled, whatever their timestamps.
COPY Cargo.toml Cargo.lock ./
COPY proto/Cargo.toml proto/
COPY common/Cargo.toml common/
COPY journal/Cargo.toml journal/
COPY supervisor/Cargo.toml supervisor/
COPY listener/Cargo.toml listener/
COPY scheduler/Cargo.toml scheduler/
# The test crates are workspace members too: their manifests and stubs let cargo load the
# workspace; they are never built here.
COPY testkit/Cargo.toml testkit/
COPY tests/system/Cargo.toml tests/system/
RUN for c in proto common journal supervisor listener scheduler testkit; do \
        mkdir -p "$c/src" "$c/tests"; : > "$c/src/lib.rs"; echo 'fn main() {}' > "$c/src/main.rs"; \
    done \
 && mkdir -p tests/system/src/bin \
 && for b in supervisor listener scheduler; do echo 'fn main() {}' > "tests/system/src/bin/system-$b.rs"; done \
 && : > supervisor/tests/all.rs \
 && t="$(rustc -vV | sed -n 's/^host: //p')" \
 && cargo build --release --locked --target "$t" -p supervisor -p listener -p scheduler \
 && cargo clean --release --target "$t" -p proto -p common -p journal -p supervisor -p listener -p scheduler \
 && rm -rf proto/src common/src journal/src supervisor/src supervisor/tests listener/src scheduler/src
COPY proto/ proto/
COPY common/ common/
COPY journal/ journal/
COPY supervisor/ supervisor/
COPY listener/ listener/
COPY scheduler/ scheduler/
# The commit `version` answers with (common/build.rs; the context has no .git).
ARG BOSUN_COMMIT=
RUN t="$(rustc -vV | sed -n 's/^host: //p')" \
 && cargo build --release --locked --target "$t" -p supervisor -p listener -p scheduler \
 && mkdir -p /out \
 && cp "target/$t/release/supervisor" "target/$t/release/listener" "target/$t/release/scheduler" /out/ \
 && /out/supervisor --version >/dev/null

FROM ${BASE_IMAGE} AS runtime
ARG DEBIAN_FRONTEND=noninteractive
# policy-rc.d: the packages' postinst must not try to start daemons inside the build.
# systemd-standalone-tmpfiles stands in for all of systemd that php-fpm's package wants.
# curl: the scheduler's notify action (webhooks, healthchecks.io pings).
# The MariaDB datadir made by the package is emptied: a fresh named volume then starts
# empty and service/mysql's setup initialises it (and runs the imports) on first start.
RUN set -eux; \
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
        mariadb-server mariadb-client nginx-light php-fpm php-mysql \
        socat tzdata ca-certificates gzip bash systemd-standalone-tmpfiles curl; \
    rm -f /usr/sbin/policy-rc.d; \
    fpm="$(ls /usr/sbin/php-fpm[0-9]* | sort -V | tail -n 1)"; \
    ln -s "$(basename "$fpm")" /usr/sbin/php-fpm; \
    rm -rf /var/lib/mysql/* /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old \
        /var/log/apt /var/log/dpkg.log /var/log/alternatives.log \
        /usr/share/man/* /usr/share/info/* /usr/share/lintian /usr/share/linda; \
    find /usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete; \
    find /usr/share/doc -mindepth 1 -type d -empty -delete; \
    find /usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +; \
    mkdir -p /data/backup /var/www /usr/local/conf /var/log/php; \
    chown mysql:mysql /var/lib/mysql /data/backup
# Users of the stack's own (docs/security.md): the two PHP pools run as `forum` and `wiki`,
# not as www-data, so that one site's code cannot act as the other's; `fcgi` is the group
# of the held FastCGI sockets (service/{php,wiki}/conf/service.toml, socket_group), which
# nginx gives its workers as their group (`user www-data fcgi;` in nginx.conf): no user is
# a member, so no process but nginx's workers has it. Fixed ids, the same in every
# container and on the host's bind mounts.
RUN set -eux; \
    groupadd --gid 2000 fcgi; \
    groupadd --gid 2001 forum; \
    useradd --uid 2001 --gid forum --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin forum; \
    groupadd --gid 2002 wiki; \
    useradd --uid 2002 --gid wiki --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin wiki
COPY --from=build /out/ /usr/local/sbin/
# Helpers the services' docker-callbacks.sh source (rotate_log_file, ...).
COPY service/common/ /usr/local/lib/bosun/
WORKDIR /usr/local
HEALTHCHECK --interval=5s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/usr/local/sbin/supervisor", "status"]
CMD ["/usr/local/sbin/supervisor"]
