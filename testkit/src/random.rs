//! Randomness a failing run can replay: a seed printed, and taken from the environment.

/// A seeded PRNG for random fault points. The test prints its seed; `BOSUN_FAULT_SEED=N`
/// replays the same choices (kill delays, victims, requests), though not the machine's timing.
pub fn seeded(test: &str) -> fastrand::Rng {
    let seed = std::env::var("BOSUN_FAULT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let seed = seed.unwrap_or_else(|| fastrand::u64(..));
    eprintln!("{test}: seed {seed} (BOSUN_FAULT_SEED={seed} replays it)");
    fastrand::Rng::with_seed(seed)
}
