# shellcheck shell=bash
# scheduler service actions; see service/mysql/bin/docker-callbacks.sh for the convention.
# Self-contained (no callbacks-lib.sh): tests/notify/run.sh runs this very file on the host.

# rotate-logs: the scheduler writes only to the container log, which Docker's log driver
# rotates (max-size/max-file in docker-compose.yaml); there is nothing to do here.
CB_rotate_logs() {
    echo "nothing to rotate: the scheduler logs to the container log"
}

# notify SERVICE ACTION USER RESULT EXIT ID ('-' where none): the target of the schedule's
# ON_FAILURE= and ON_SUCCESS= lines (README.md, "Telling you when it fails: notifications").
#   - always logs one line: `notify: mysql nightly-backup user=forum result=failed exit=3 id=17`
#   - fetches the run's last NOTIFY_LINES_MAX lines with `scheduler send SERVICE log ID`
#   - NOTIFY_URL set: POSTs one JSON message that Slack and Mattermost incoming webhooks
#     and a generic webhook all take: `text` (a summary and the lines in a code block) and
#     `service action user result exit id host lines` (user, exit, id: null for `-`)
#   - HEALTHCHECKS_URL set: POSTs a summary and the lines (healthchecks.io keeps a ping's
#     body as its log) to HEALTHCHECKS_URL for `ok`, to HEALTHCHECKS_URL/fail otherwise
#   - returns 0 when every configured delivery got a 2xx answer, 1 when one did not (the
#     scheduler logs that; it never notifies about a notification), 64 for bad arguments.
# Output bytes: lines are cut at NOTIFY_LINE_BYTES bytes (marked with …), bytes that are not
# UTF-8 are dropped (the journal already turns them into U+FFFD), NUL bytes are dropped,
# every other control character is escaped as JSON says; so the JSON is always valid.
# In `text` only, & < > are written &amp; &lt; &gt; as Slack asks, so no output line can
# become a mention (`<!channel>`) in Slack or Mattermost.
# The URLs are never logged: a webhook URL is a credential.
NOTIFY_LINES_MAX=20
NOTIFY_LINE_BYTES=300

CB_notify() {
    local LC_ALL=C  # byte semantics for cutting and escaping; UTF-8 is cleaned by iconv
    if [ $# -ne 6 ]; then
        echo "notify: takes SERVICE ACTION USER RESULT EXIT ID ('-' where none), not $# argument(s)" >&2
        return 64
    fi
    local service=$1 action=$2 user=$3 result=$4 exit=$5 id=$6
    case $result in
        ok | failed | missed | refused) ;;
        *) echo "notify: RESULT is ok, failed, missed or refused, not '$result'" >&2; return 64 ;;
    esac
    if ! [[ $service =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]]; then
        echo "notify: SERVICE is a service name ([A-Za-z0-9_.-]), not '$service'" >&2; return 64
    fi
    if ! [[ $exit =~ ^(-|[0-9]{1,3})$ ]]; then
        echo "notify: EXIT is an exit code or -, not '$exit'" >&2; return 64
    fi
    if ! [[ $id =~ ^(-|[0-9]{1,19})$ ]]; then
        echo "notify: ID is a run id or -, not '$id'" >&2; return 64
    fi
    echo "notify: $service $action user=$user result=$result exit=$exit id=$id"

    # The run's last lines, from the target's journal (`log` of a run that printed nothing
    # answers nothing, and `scheduler send` exits 0 for it).
    local -a lines=()
    local out rc note=
    if [ "$id" != - ]; then
        out=$(timeout 20 scheduler send "$service" log "$id" 2>/dev/null | tr -d '\000'
            exit "${PIPESTATUS[0]}")
        rc=$?
        if [ $rc -eq 0 ]; then
            if [ -n "$out" ]; then _notify_last_lines "$out"; else note="it printed nothing"; fi
        else
            note="its output could not be fetched: scheduler send $service log $id exited $rc${out:+: ${out%%$'\n'*}}"
            echo "notify: $note" >&2
        fi
    fi

    local host=${NOTIFY_HOST:-${HOSTNAME:-$(uname -n)}} outcome
    host=$(printf '%s' "$host" | iconv -f UTF-8 -t UTF-8 -c 2>/dev/null)
    case $result in
        ok) outcome="ok" ;;
        failed) outcome="FAILED with exit $exit" ;;
        missed) outcome="MISSED: not run (no answer within the retry window, or the clock jumped past it)" ;;
        refused) outcome="REFUSED by the service (its answer is in the scheduler's log)" ;;
    esac
    local summary="$host: $service $action"
    [ "$user" != - ] && summary+=" (user $user)"
    summary+=" $outcome"
    [ "$id" != - ] && summary+=" (run $id)"

    local failed=0
    if [ -n "${NOTIFY_URL:-}" ]; then
        local text=$summary l json
        if [ ${#lines[@]} -gt 0 ]; then
            text+=$'\n'"last ${#lines[@]} lines of its output:"$'\n''```'
            for l in "${lines[@]}"; do text+=$'\n'$l; done
            text+=$'\n''```'
        fi
        [ -n "$note" ] && text+=$'\n'"($note)"
        json="{\"text\":$(_notify_json "$(_notify_slack_escape "$text")")"
        json+=",\"service\":$(_notify_json "$service"),\"action\":$(_notify_json "$action")"
        json+=",\"user\":$(_notify_json_or_null "$user"),\"result\":$(_notify_json "$result")"
        json+=",\"exit\":$(_notify_number_or_null "$exit"),\"id\":$(_notify_number_or_null "$id")"
        json+=",\"host\":$(_notify_json "$host"),\"lines\":["
        local sep=
        for l in "${lines[@]}"; do json+="$sep$(_notify_json "$l")"; sep=,; done
        json+="]}"
        printf '%s' "$json" | _notify_post NOTIFY_URL "$NOTIFY_URL" application/json || failed=1
    fi
    if [ -n "${HEALTHCHECKS_URL:-}" ]; then
        # ok -> URL, else URL/fail; a query string (slug URLs: ?create=1) stays at the end.
        local base=${HEALTHCHECKS_URL%%\?*} query url what=HEALTHCHECKS_URL
        query=${HEALTHCHECKS_URL#"$base"}
        url=$HEALTHCHECKS_URL
        if [ "$result" != ok ]; then
            url=${base%/}/fail$query
            what=HEALTHCHECKS_URL/fail
        fi
        {
            printf '%s\n' "$summary" "${lines[@]}"
            [ -z "$note" ] || printf '(%s)\n' "$note"
        } | _notify_post "$what" "$url" 'text/plain; charset=utf-8' || failed=1
    fi
    if [ -z "${NOTIFY_URL:-}" ] && [ -z "${HEALTHCHECKS_URL:-}" ]; then
        echo "notify: neither NOTIFY_URL nor HEALTHCHECKS_URL is set: logged only"
    fi
    return $failed
}

# _notify_last_lines TEXT: sets `lines` to the last NOTIFY_LINES_MAX lines of TEXT, each cut
# at NOTIFY_LINE_BYTES bytes, as valid UTF-8 (a character cut in half and any other invalid
# sequence dropped by iconv -c).
_notify_last_lines() {
    local LC_ALL=C l
    local -a cut=()
    while IFS= read -r l; do
        if [ ${#l} -gt "$NOTIFY_LINE_BYTES" ]; then l="${l:0:NOTIFY_LINE_BYTES}…"; fi
        cut+=("$l")
    done < <(printf '%s\n' "$1" | tail -n "$NOTIFY_LINES_MAX")
    mapfile -t lines < <(printf '%s\n' "${cut[@]}" | iconv -f UTF-8 -t UTF-8 -c 2>/dev/null)
}

# _notify_json S: S as a JSON string literal (quotes, backslashes and control characters
# escaped; S must be UTF-8 already, or ASCII).
_notify_json() {
    local LC_ALL=C s=$1 bs=$'\\' bs2=$'\\\\' q='"' bsq=$'\\"' c o u i
    s=${s//"$bs"/"$bs2"}
    s=${s//"$q"/"$bsq"}
    if [[ $s == *[[:cntrl:]]* ]]; then
        s=${s//$'\n'/'\n'}
        s=${s//$'\t'/'\t'}
        s=${s//$'\r'/'\r'}
        for ((i = 1; i < 32; i++)); do
            printf -v o '%03o' "$i"
            printf -v c '%b' "\\0$o"
            if [[ $s == *"$c"* ]]; then
                printf -v u '\\u%04x' "$i"
                s=${s//"$c"/"$u"}
            fi
        done
    fi
    printf '"%s"' "$s"
}

# _notify_json_or_null S: null for -, else S as a JSON string.
_notify_json_or_null() { if [ "$1" = - ]; then printf null; else _notify_json "$1"; fi; }
# _notify_number_or_null N: null for -, else N (digits, checked by the caller).
_notify_number_or_null() { if [ "$1" = - ]; then printf null; else printf '%s' "$((10#$1))"; fi; }

# _notify_slack_escape S: & < > as &amp; &lt; &gt; (Slack's rule for message text).
_notify_slack_escape() {
    local s=$1 amp='&amp;' lt='&lt;' gt='&gt;'
    s=${s//&/"$amp"}
    s=${s//</"$lt"}
    s=${s//>/"$gt"}
    printf '%s' "$s"
}

# _notify_post WHAT URL TYPE: POSTs stdin to URL; 0 when answered 2xx. curl retries twice
# on a timeout or a 408/429/5xx answer, and gives up after 10 s per attempt; nothing else
# retries (the scheduler does not either). Logs the outcome, never the URL.
# The URL is a credential (a webhook's path is its token): it never goes on curl's command
# line, where every local user sees it with `ps`. curl reads it from its standard input as
# a config file (`-K -`, `url = "..."` with \ and " escaped as that syntax asks; curl 7.x
# and 8.x alike), and the body comes from a private temporary file instead.
_notify_post() {
    local what=$1 url=$2 type=$3 out rc code=000 body tmp data err
    case $url in
        http://* | https://*) ;;
        *) echo "notify: $what: not delivered: not an http:// or https:// URL" >&2; return 1 ;;
    esac
    if [[ $url == *[[:cntrl:]]* ]]; then
        echo "notify: $what: not delivered: the URL holds a control character" >&2; return 1
    fi
    data=$(mktemp) || { echo "notify: $what: not delivered: no temporary file" >&2; return 1; }
    tmp=$(mktemp) || { rm -f "$data"; echo "notify: $what: not delivered: no temporary file" >&2; return 1; }
    cat >"$data"
    # stdout: the -w line only (the answer goes to $tmp); stderr: curl's own messages.
    out=$(_notify_curl_config "$url" | curl -sS --fail-with-body --proto =http,https \
        --max-time 10 --retry 2 --retry-max-time 30 -H "Content-Type: $type" \
        --data-binary @"$data" -o "$tmp" -w '\n[http %{http_code}]' -K - 2>&1)
    rc=$?
    body=$(head -c 200 "$tmp" | tr -d '\000-\010\016-\037\177' | tr -s '\n\t\v\f\r ' '      ')
    body=${body%" "}
    rm -f "$tmp" "$data"
    [[ $out =~ \[http\ ([0-9]{3})\] ]] && code=${BASH_REMATCH[1]}
    if [ $rc -eq 0 ] && [[ $code == 2[0-9][0-9] ]]; then
        echo "notify: $what: delivered (HTTP $code)"
        return 0
    fi
    if [ "$code" != 000 ]; then
        echo "notify: $what: not delivered: HTTP $code${body:+: $body}" >&2
    else
        err=$(grep '^curl: ' <<<"$out" | tail -n 1)
        echo "notify: $what: not delivered: ${err:-curl exit $rc}" >&2
    fi
    return 1
}

# _notify_curl_config URL: a curl config line that sets URL (curl's config syntax: inside
# double quotes, \ and " are escaped with a backslash). printf is a bash builtin: the URL
# is on no process's command line here either.
_notify_curl_config() {
    local u=$1 bs=$'\\' bs2=$'\\\\' q='"' bsq=$'\\"'
    u=${u//"$bs"/"$bs2"}
    u=${u//"$q"/"$bsq"}
    printf 'url = "%s"\n' "$u"
}
