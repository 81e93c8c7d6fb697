//! The supervisor's part of the `metrics` built-in (DESIGN.md section 7): the main
//! process's families. The listener adds the actions' (from its journal); the text format
//! is `proto::metrics`'.

use proto::metrics::{Family, Kind};

/// What the core knows of the main process for `metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MainMetrics {
    /// The main process runs (it has a pid, ready or not).
    pub up: bool,
    /// The `restarts=` of `status`: starts of the main process after its first.
    pub restarts: u64,
    /// Starts of the main process by a connection (on-demand services).
    pub on_demand_starts: u64,
}

impl MainMetrics {
    /// `bosun_main_up`, `bosun_main_restarts_total`, `bosun_on_demand_starts_total`.
    pub fn families(&self) -> Vec<Family> {
        let mut up = Family::new(
            "bosun_main_up",
            "1 when the container's main process runs, else 0.",
            Kind::Gauge,
        );
        up.sample(&[], if self.up { 1.0 } else { 0.0 });
        let mut restarts = Family::new(
            "bosun_main_restarts_total",
            "Starts of the main process after its first, since the container started.",
            Kind::Counter,
        );
        restarts.sample(&[], self.restarts as f64);
        let mut od = Family::new(
            "bosun_on_demand_starts_total",
            "Starts of the main process by an incoming connection (on demand), since the container started.",
            Kind::Counter,
        );
        od.sample(&[], self.on_demand_starts as f64);
        vec![up, restarts, od]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::Answer;

    #[test]
    fn the_main_process_families_as_the_client_reads_them() {
        let m = Answer::Metrics(
            MainMetrics {
                up: true,
                restarts: 2,
                on_demand_starts: 0,
            }
            .families(),
        )
        .to_string();
        assert!(!m.ends_with('\n'), "no trailing newline on the channel");
        let samples: Vec<&str> = m.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "bosun_main_up 1",
                "bosun_main_restarts_total 2",
                "bosun_on_demand_starts_total 0"
            ]
        );
        assert!(m.contains("# TYPE bosun_main_restarts_total counter\n"));
    }
}
