//! Zombies: every orphan re-parented to the supervisor is reaped, as PID 1 and as a
//! subreaper.

use std::time::Duration;

use crate::harness::*;

/// Double-forks N children that exit at once, then waits (with a deadline) until no
/// zombie whose parent is the supervisor is left, and exits 0 — or 1 on timeout.
const ORPHANS: &str = r#"
sup=$PPID
for i in $(seq 1 $N); do ( sh -c 'exit 0' & ) ; done
end=$((SECONDS + 10))
while [ $SECONDS -lt $end ]; do
  z=0
  for f in /proc/[0-9]*/stat; do
    read -r line < "$f" 2>/dev/null || continue
    rest=${line##*) }
    set -- $rest
    [ "$1" = Z ] && [ "$2" = "$sup" ] && z=$((z+1))
  done
  [ $z -eq 0 ] && exit 0
  sleep 0.05
done
echo "zombies left: $z" >&2
exit 1
"#;

#[test]
fn a_burst_of_orphans_leaves_no_zombie() {
    for mode in MODES {
        let (st, _, err) = sup(mode)
            .env("N", "500")
            .script(ORPHANS)
            .run(Duration::from_secs(30));
        assert_eq!(st.code(), Some(0), "{mode:?}: {err}");
    }
}
