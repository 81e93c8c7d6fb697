#!/usr/bin/env bash
# deploy/kubernetes under `podman kube play` (Debian 12's podman 4.3), as far as podman 4.3
# can play it: no cluster here. What it runs, and what it changes first (a copy, never the
# manifests), because podman 4.3 differs from Kubernetes:
#
#   - a Secret in the YAML is refused when a container uses it ("secret bosun-db is not
#     valid JSON"): its values are written into the containers' env instead
#   - an emptyDir is a named volume, shared by every pod that names it (all replicas, and
#     the db pod's sock-mysqld with the web pods'), not one per pod, and it takes the owner
#     and mode of the image's directory it is mounted on (/run/mysqld: mysql's, 0755; an
#     emptyDir is root's, 0777), whichever container mounts it first; and `replicas: 3`
#     makes three pods that would then share one /run. So each emptyDir is a hostPath
#     directory of the test's own (empty, root's, 0777), one per pod and volume, and the
#     web Deployment is played three times as bosun-web-1..3, with replicas: 1: three
#     pods, each with its own /run, as Kubernetes gives them
#   - a volume's subPath is ignored (every subPath mount gets the whole volume): each one
#     is a directory of its own, root's, 0755, as the kubelet makes a subPath
#   - a containerPort is published on the host, so a second replica fails ("bind: address
#     already in use"): the ports are dropped (the test reaches each pod's address)
#   - a Service is ignored (no name bosun-mysqld): a hostAliases entry names the db pod's
#     address in the web pods
#
# Checks:
#   1. the db pod: mysql, mysqld-bridge and the once-only scheduler healthy; a backup sent
#      by that scheduler runs (done exit=0)
#   2. three web pods: php, wiki, nginx, mysqld-relay and the sidecar scheduler healthy in
#      each; a forum page through each pod's nginx counts visits in the one database (the
#      socket relay to mysqld-bridge, over TCP, to MariaDB's socket)
#   3. each pod's sidecar: `scheduler send php@each` reaches its own pod's php only,
#      instance 1 of that pod's /run, once
#
# Removes what it made, also on failure: the pods, their volumes, the podman images, the
# bosun-mn-k-* images on the Docker engine, and podman's kube network when it made it.
# podman's rlimits come from a containers.conf of its own (CONTAINERS_CONF): runc here
# cannot raise them (no CAP_SYS_RESOURCE), and the defaults (1048576 open files) are above
# the sandbox's.
#
# Env: BOSUN_TAG (local): the image bosun:$BOSUN_TAG, built unless E2E_BUILD=0.
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
START=$SECONDS
export BOSUN_TAG=${BOSUN_TAG:-local}
PREFIX=bosun-mn-k
WEB_PODS=(1 2 3)
E2E_TAG=kube
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh

cleanup() {
    local rc=$?
    trap - EXIT
    trap '' INT TERM
    if ((FAILED > 0 || rc != 0)) && [ -n "${PLAYED:-}" ]; then
        local c
        for c in $(podman ps -a --format '{{.Names}}' | grep -E '^bosun-(db|web-[0-9])-pod-0-'); do
            log "logs of $c (last 10 lines):"
            podman logs --tail 10 "$c" 2>&1 | sed 's/^/    /'
        done
    fi
    local f
    for f in "$T"/play-*.yaml; do
        [ -e "$f" ] && podman kube play --down "$f" >/dev/null 2>&1
    done
    podman volume ls -q | grep -E "^($PREFIX-|bosun-mysql-data$|bosun-keep$|bosun-(db|web)-schedule$)" |
        xargs -r podman volume rm -f >/dev/null 2>&1
    [ -n "${MADE_NETWORK:-}" ] && podman network rm -f podman-default-kube-network >/dev/null 2>&1
    [ -n "${MADE_PAUSE:-}" ] && podman rmi -f localhost/podman-pause:4.3.1-0 >/dev/null 2>&1
    podman images --format '{{.Repository}}:{{.Tag}}' | grep -E "^localhost/($PREFIX-|bosun:$BOSUN_TAG$)" |
        xargs -r podman rmi -f >/dev/null 2>&1
    docker images --format '{{.Repository}}:{{.Tag}}' | grep "^$PREFIX-" | xargs -r docker rmi >/dev/null 2>&1
    rm -rf "$T"
    finish "kube e2e (podman kube play)" "$rc"
}

# quiet CMD...: run CMD, its output shown only when it fails (the legacy builder's
# deprecation notice on every build otherwise).
quiet() {
    local out
    out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
}

# ---- preparation ------------------------------------------------------------------------
need_engine_and_tools
if ! command -v podman >/dev/null || ! command -v catatonit >/dev/null; then
    log "podman or catatonit missing: installing"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman catatonit; } >/dev/null || exit 1
fi
if podman pod exists bosun-db-pod-0 2>/dev/null; then
    log "a pod bosun-db-pod-0 exists already (another run?): remove it first"
    exit 1
fi
python3 -c 'import yaml' 2>/dev/null || { log "python3 has no yaml (apt-get install python3-yaml)"; exit 1; }
T=$(mktemp -d "/tmp/$PREFIX.XXXXXX") || exit 1
trap cleanup EXIT
trap 'exit 130' INT TERM
export CONTAINERS_CONF=$T/containers.conf
printf '[containers]\ndefault_ulimits = ["nofile=16384:16384", "nproc=30000:30000"]\n' >"$CONTAINERS_CONF"
podman network exists podman-default-kube-network || MADE_NETWORK=1
# podman builds its pods' infra image on first use: removed again if this run made it.
podman image exists localhost/podman-pause:4.3.1-0 || MADE_PAUSE=1

if [ "${E2E_BUILD:-1}" != 0 ]; then
    log "building the image (docker build -t bosun:$BOSUN_TAG .)"
    quiet docker build -q -t "bosun:$BOSUN_TAG" . || exit 1
fi
t=$SECONDS
imgs=("bosun:$BOSUN_TAG")
for s in mysql php wiki nginx scheduler; do
    quiet docker build -q -f deploy/kubernetes/Dockerfile --build-arg "BOSUN_IMAGE=bosun:$BOSUN_TAG" \
        --build-arg "SERVICE=$s" -t "$PREFIX-$s:local" service/ || exit 1
    imgs+=("$PREFIX-$s:local")
done
docker save "${imgs[@]}" | podman load -q >/dev/null || exit 1
log "the personality images built (deploy/kubernetes/Dockerfile) and loaded into podman in $((SECONDS - t))s"

# adapt OUT DEPLOYMENT [COPY DB_IP]: the objects of deploy/kubernetes for one play, changed
# as the header says.
adapt() {
    python3 - "$ROOT/deploy/kubernetes" "$BOSUN_TAG" "$T/dirs" "$@" <<'EOF'
import os, sys, yaml
src, tag, dirs, out, deployment = sys.argv[1:6]
prefix = "bosun-mn-k"
copy, db_ip = (sys.argv[6], sys.argv[7]) if len(sys.argv) > 7 else (None, None)
docs = [d for f in ("bosun.yaml", "web.yaml") for d in yaml.safe_load_all(open(f"{src}/{f}")) if d]
secrets = {d["metadata"]["name"]: d.get("stringData", {}) for d in docs if d["kind"] == "Secret"}
mine = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == deployment][0]
spec = mine["spec"]["template"]["spec"]
# the ConfigMaps and claims it uses, then the Deployment itself
used = {v.get("configMap", {}).get("name") for v in spec["volumes"]} | {
    v.get("persistentVolumeClaim", {}).get("claimName") for v in spec["volumes"]}
keep = [d for d in docs if d["kind"] in ("ConfigMap", "PersistentVolumeClaim") and d["metadata"]["name"] in used]
if copy:
    mine["metadata"]["name"] = f"{deployment}-{copy}"
    mine["spec"]["replicas"] = 1
    spec["hostAliases"] = [{"ip": db_ip, "hostnames": ["bosun-mysqld"]}]
owner = mine["metadata"]["name"]
def directory(name, mode):
    """A new directory, root's: an emptyDir (0777) or a subPath the kubelet makes (0755)."""
    path = f"{dirs}/{owner}/{name}"
    os.makedirs(path)
    os.chmod(path, mode)
    return {"path": path, "type": "Directory"}
for v in spec["volumes"]:
    if "emptyDir" in v:
        del v["emptyDir"]
        v["hostPath"] = directory(v["name"], 0o777)
for c in spec["containers"]:
    c.pop("ports", None)
    env = c.get("env", [])
    for ef in c.pop("envFrom", []):
        env += [{"name": k, "value": v} for k, v in secrets[ef["secretRef"]["name"]].items()]
    for e in env:
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            del e["valueFrom"]
            e["value"] = secrets[ref["name"]][ref["key"]]
    if env:
        c["env"] = env
    name, _, _ = c["image"].partition(":")
    c["image"] = f"bosun:{tag}" if name == "bosun" else f"{prefix}-{name[len('bosun-'):]}:local"
    for m in c["volumeMounts"]:
        if "subPath" in m:
            sub = f"{m['name']}-{m.pop('subPath').replace('/', '-')}"
            if sub not in {v["name"] for v in spec["volumes"]}:
                spec["volumes"].append({"name": sub, "hostPath": directory(sub, 0o755)})
            m["name"] = sub
yaml.safe_dump_all(keep + [mine], open(out, "w"), sort_keys=False)
EOF
}
# play FILE: podman kube play, its noise (no systemd here for the health timers) dropped.
play() {
    local out f=$1
    out=$(podman kube play "$f" 2>&1) || { log "  podman kube play $f: $(grep -v healthcheck <<<"$out" | tail -n 3)"; return 1; }
}
# healthy POD CONTAINER...: each container's probe command (`supervisor status`) passes.
# Run with exec, not `podman healthcheck run`: podman makes a livenessProbe a health check
# ending in `|| kill 1`, and without the kubelet's startupProbe gate a check during
# MariaDB's first import would kill it (podman runs its checks from systemd timers, and
# there is no systemd here, so none run by themselves).
healthy() {
    local pod=$1 c
    shift
    for c in "$@"; do podman exec "$pod-$c" /usr/local/sbin/supervisor status >/dev/null 2>&1 || return 1; done
}
pod_ip() {
    podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' \
        "$(podman pod inspect "$1" -f '{{.InfraContainerID}}')"
}

# ---- 1. the db pod ----------------------------------------------------------------------
DB=bosun-db-pod-0
check_db() {
    local r
    adapt "$T/play-db.yaml" bosun-db || return 1
    PLAYED=1
    play "$T/play-db.yaml" || return 1
    wait_until 180 "the db pod's containers healthy" healthy "$DB" mysql mysqld-bridge scheduler || return 1
    DB_IP=$(pod_ip "$DB")
    log "  $DB: mysql, mysqld-bridge, scheduler healthy; address $DB_IP"
    r=$(podman exec "$DB-scheduler" scheduler send --user forum mysql nightly-backup 2>&1)
    log "  scheduler send --user forum mysql nightly-backup: $(tr '\n' '|' <<<"$r")"
    grep -qE '^done [^ ]+ exit=0( |$)' <<<"$r"
}
check "the db pod: mysql, mysqld-bridge and its scheduler healthy; a backup runs" check_db
if ((FAILED > 0)); then exit 1; fi

# ---- 2. three web pods --------------------------------------------------------------------
visits() { curl -fsS --max-time 20 "http://$1/" | sed -n 's/.*id="visits">\([0-9]*\)<.*/\1/p'; }
page_up() { [ -n "$(visits "$1")" ]; }
check_web() {
    local n pod ip v last=0
    for n in "${WEB_PODS[@]}"; do
        adapt "$T/play-web-$n.yaml" bosun-web "$n" "$DB_IP" || return 1
        play "$T/play-web-$n.yaml" || return 1
    done
    for n in "${WEB_PODS[@]}"; do
        pod=bosun-web-$n-pod-0
        wait_until 180 "$pod's containers healthy" healthy "$pod" php wiki nginx mysqld-relay scheduler || return 1
        ip=$(pod_ip "$pod")
        wait_until 60 "a forum page from $pod" page_up "$ip" || return 1
        v=$(visits "$ip")
        log "  $pod ($ip): all healthy; forum visits $v"
        ((v > last)) || fail "the counter did not go up ($last, then $v): not one database" || return 1
        last=$v
    done
}
check "three web pods, each its own /run: all healthy, the forum served from each through the relay" check_web

# ---- 3. each sidecar reaches its own pod ----------------------------------------------------
check_each() {
    local n pod out h
    for n in "${WEB_PODS[@]}"; do
        pod=bosun-web-$n-pod-0
        out=$(podman exec "$pod-scheduler" scheduler send php@each rotate-logs 2>&1) ||
            fail "$pod: scheduler send php@each rotate-logs: $(tr '\n' '|' <<<"$out")" || return 1
        h=$(podman exec "$pod-scheduler" scheduler send php history rotate-logs 2>&1)
        log "  $pod: php@each: $(tr '\n' '|' <<<"$out") history: $(tr '\n' '|' <<<"$h")"
        [ "$(grep -c ' rotate-logs ' <<<"$h")" -eq 1 ] || fail "$pod's php ran rotate-logs $(grep -c ' rotate-logs ' <<<"$h") times" || return 1
        grep -q 'instance=1\b' <<<"$(podman exec "$pod-scheduler" scheduler send php status 2>&1)" ||
            fail "$pod's php is not instance 1" || return 1
    done
}
check "each pod's sidecar: php@each is that pod's php, instance 1, once" check_each
