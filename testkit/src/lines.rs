//! A program's output as the test sees it: the text so far, its end (EOF) as an event, and
//! waits on lines that wake when a line arrives rather than on a timer.

use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    text: String,
    ended: bool,
}

/// Output shared between the thread that reads it and the test that waits on it.
#[derive(Clone)]
pub struct Lines {
    inner: Arc<(Mutex<State>, Condvar)>,
    deadline: Duration,
}

impl Default for Lines {
    fn default() -> Self {
        Lines::new(crate::DEADLINE)
    }
}

impl Lines {
    /// Empty, with `deadline` for the waits that take none.
    pub fn new(deadline: Duration) -> Lines {
        Lines {
            inner: Arc::default(),
            deadline,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends raw output (any bytes: shown lossily).
    pub fn append(&self, bytes: &[u8]) {
        self.state().text.push_str(&String::from_utf8_lossy(bytes));
        self.inner.1.notify_all();
    }

    /// Appends one line.
    pub fn push(&self, line: String) {
        let mut s = self.state();
        s.text.push_str(&line);
        s.text.push('\n');
        drop(s);
        self.inner.1.notify_all();
    }

    /// Marks the end of the output (the writer closed it).
    pub fn end(&self) {
        self.state().ended = true;
        self.inner.1.notify_all();
    }

    /// Everything so far, as it came.
    pub fn text(&self) -> String {
        self.state().text.clone()
    }

    /// The complete lines so far (a last line without its newline is not one yet).
    pub fn lines(&self) -> Vec<String> {
        complete_lines(&self.state().text)
    }

    /// Waits until `ready` holds for the state; panics at `within` with everything seen.
    fn wait_state<T>(
        &self,
        what: &str,
        within: Duration,
        ready: impl Fn(&State) -> Option<T>,
    ) -> T {
        let end = Instant::now() + within;
        let mut s = self.state();
        loop {
            if let Some(v) = ready(&s) {
                return v;
            }
            let now = Instant::now();
            if now >= end {
                panic!(
                    "timed out after {within:?} waiting for {what}; saw:\n{}",
                    s.text
                );
            }
            s = self
                .inner
                .1
                .wait_timeout(s, end - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for a complete line satisfying `pred`; returns it.
    pub fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_line_within(what, self.deadline, pred)
    }

    /// [`Lines::wait`] with its own deadline.
    pub fn wait_line_within(
        &self,
        what: &str,
        within: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        self.wait_state(what, within, |s| {
            complete_lines(&s.text).into_iter().find(|l| pred(l))
        })
    }

    /// Waits for a line containing `needle`.
    pub fn wait_for(&self, needle: &str) -> String {
        self.wait(needle, |l| l.contains(needle))
    }

    /// Waits until the complete lines so far satisfy `pred`; returns them.
    pub fn wait_until(&self, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        self.wait_state(what, self.deadline, |s| {
            let lines = complete_lines(&s.text);
            pred(&lines).then_some(lines)
        })
    }

    /// Waits until the whole text contains `needle`; returns the text.
    pub fn wait_text(&self, needle: &str, within: Duration) -> String {
        self.wait_state(&format!("{needle:?}"), within, |s| {
            s.text.contains(needle).then(|| s.text.clone())
        })
    }

    /// Waits for the end of the output; false if it has not ended within `within`.
    pub fn wait_end(&self, within: Duration) -> bool {
        let end = Instant::now() + within;
        let mut s = self.state();
        while !s.ended {
            let now = Instant::now();
            if now >= end {
                return false;
            }
            s = self
                .inner
                .1
                .wait_timeout(s, end - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

fn complete_lines(text: &str) -> Vec<String> {
    let whole = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => return Vec::new(),
    };
    whole.split('\n').map(str::to_string).collect()
}

/// Copies `from` into `into` on a thread of its own until end of input, then marks the end.
/// With `echo`, every chunk is also copied to the test's stderr under that prefix.
pub fn pump(
    mut from: impl Read + Send + 'static,
    into: Lines,
    echo: Option<String>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(p) = &echo {
                        eprint!("{p}: {}", String::from_utf8_lossy(&buf[..n]));
                    }
                    into.append(&buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        into.end();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_complete_at_its_newline() {
        let l = Lines::default();
        l.append(b"one\ntw");
        assert_eq!(l.lines(), ["one"]);
        l.append(b"o\n");
        assert_eq!(l.lines(), ["one", "two"]);
        assert_eq!(l.text(), "one\ntwo\n");
    }

    #[test]
    fn a_wait_wakes_on_the_line_from_another_thread() {
        let l = Lines::default();
        let w = l.clone();
        let t = std::thread::spawn(move || w.push("ready".into()));
        assert_eq!(l.wait_for("rea"), "ready");
        t.join().unwrap();
    }

    #[test]
    fn the_end_is_an_event() {
        let l = Lines::default();
        assert!(!l.wait_end(Duration::from_millis(1)));
        let h = pump(&b"a\nb"[..], l.clone(), None);
        assert!(l.wait_end(Duration::from_secs(5)));
        h.join().unwrap();
        assert_eq!(l.text(), "a\nb");
    }

    #[test]
    #[should_panic(expected = "waiting for never")]
    fn a_wait_that_times_out_says_what_it_waited_for() {
        Lines::new(Duration::from_millis(10)).wait_for("never");
    }
}
