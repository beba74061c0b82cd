//! Runs job steps on intervals inside `ringfence serve`, until told to stop.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Runs `step` now and then every `every`, until `stop` turns true. A failing step is
/// logged by name and retried at the next tick; it never stops the server.
pub async fn run_every<F, Fut, E>(
    name: &'static str,
    every: Duration,
    mut stop: watch::Receiver<bool>,
    mut step: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Err(e) = step().await {
                    tracing::warn!(job = name, cause = %e, "job step failed; retrying at the next interval");
                }
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}
