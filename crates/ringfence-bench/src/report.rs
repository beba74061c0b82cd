//! Medians, percentiles, ratios and the printed table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

/// One measurement of one figure.
#[derive(Debug, Clone)]
pub struct Sample {
    pub calls: u64,
    pub requests: u64,
    pub seconds: f64,
    /// Request latency percentiles in milliseconds, where requests were timed one by one.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Sample {
    pub fn new(calls: u64, requests: u64, seconds: f64, latencies_us: &mut [u32]) -> Sample {
        latencies_us.sort_unstable();
        Sample {
            calls,
            requests,
            seconds,
            p50_ms: percentile(latencies_us, 0.50).map(|us| us as f64 / 1000.0),
            p99_ms: percentile(latencies_us, 0.99).map(|us| us as f64 / 1000.0),
        }
    }

    pub fn rate(&self) -> f64 {
        self.calls as f64 / self.seconds
    }

    fn to_json(&self) -> Value {
        json!({"calls": self.calls, "requests": self.requests, "seconds": self.seconds, "calls_per_s": self.rate(), "p50_ms": self.p50_ms, "p99_ms": self.p99_ms})
    }
}

/// The nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// A ratio between two figures, measured within each repetition, with its target if any.
pub struct RatioSpec {
    pub name: &'static str,
    pub numerator: &'static str,
    pub denominator: &'static str,
    pub at_least: Option<f64>,
}

/// An absolute target on one figure's rate.
pub struct RateTarget {
    pub figure: &'static str,
    pub at_least: f64,
}

/// Every sample of every figure, in the order the figures ran.
#[derive(Default)]
pub struct Results {
    pub order: Vec<&'static str>,
    pub samples: BTreeMap<&'static str, Vec<Sample>>,
}

impl Results {
    pub fn add(&mut self, figure: &'static str, sample: Sample) {
        if !self.order.contains(&figure) {
            self.order.push(figure);
        }
        self.samples.entry(figure).or_default().push(sample);
    }

    fn rates(&self, figure: &str) -> Vec<f64> {
        self.samples
            .get(figure)
            .map(|s| s.iter().map(Sample::rate).collect())
            .unwrap_or_default()
    }

    pub fn median_rate(&self, figure: &str) -> Option<f64> {
        median(&self.rates(figure))
    }

    /// The ratio within each repetition that ran both figures.
    pub fn ratios(&self, spec: &RatioSpec) -> Vec<f64> {
        self.rates(spec.numerator)
            .iter()
            .zip(self.rates(spec.denominator))
            .map(|(a, b)| a / b)
            .collect()
    }

    pub fn table(&self, ratios: &[RatioSpec], targets: &[RateTarget]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<26} {:>12} {:>23} {:>9} {:>9} {:>5}  target",
            "figure", "calls/s", "min..max", "p50 ms", "p99 ms", "runs"
        );
        for figure in &self.order {
            let samples = &self.samples[figure];
            let rates = self.rates(figure);
            let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let max = rates.iter().copied().fold(0.0, f64::max);
            let p50 = median(&samples.iter().filter_map(|s| s.p50_ms).collect::<Vec<_>>());
            let p99 = median(&samples.iter().filter_map(|s| s.p99_ms).collect::<Vec<_>>());
            let fmt_ms =
                |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
            let target = targets
                .iter()
                .find(|t| t.figure == *figure)
                .map(|t| {
                    format!(
                        ">= {:.0}: {}",
                        t.at_least,
                        met(self.median_rate(figure).is_some_and(|r| r >= t.at_least))
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<26} {:>12.0} {:>23} {:>9} {:>9} {:>5}  {}",
                figure,
                self.median_rate(figure).unwrap_or(f64::NAN),
                format!("{min:.0}..{max:.0}"),
                fmt_ms(p50),
                fmt_ms(p99),
                samples.len(),
                target
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<44} {:>8} {:>17}  target",
            "ratio (median of per-repetition ratios)", "value", "min..max"
        );
        for spec in ratios {
            let values = self.ratios(spec);
            let Some(m) = median(&values) else { continue };
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(0.0, f64::max);
            let target = spec
                .at_least
                .map(|t| format!(">= {t}: {}", met(m >= t)))
                .unwrap_or_else(|| "(for information)".into());
            let _ = writeln!(
                out,
                "{:<44} {:>8.2} {:>17}  {}",
                spec.name,
                m,
                format!("{min:.2}..{max:.2}"),
                target
            );
        }
        out
    }

    pub fn to_json(&self, ratios: &[RatioSpec], targets: &[RateTarget]) -> Value {
        let figures: serde_json::Map<String, Value> = self
            .order
            .iter()
            .map(|f| {
                let samples = &self.samples[f];
                let target = targets.iter().find(|t| t.figure == *f);
                let median_rate = self.median_rate(f);
                (
                    (*f).to_owned(),
                    json!({
                        "median_calls_per_s": median_rate,
                        "median_p50_ms": median(&samples.iter().filter_map(|s| s.p50_ms).collect::<Vec<_>>()),
                        "median_p99_ms": median(&samples.iter().filter_map(|s| s.p99_ms).collect::<Vec<_>>()),
                        "target_calls_per_s": target.map(|t| t.at_least),
                        "target_met": target.map(|t| median_rate.is_some_and(|r| r >= t.at_least)),
                        "runs": samples.iter().map(Sample::to_json).collect::<Vec<_>>(),
                    }),
                )
            })
            .collect();
        let ratios: Vec<Value> = ratios
            .iter()
            .filter_map(|spec| {
                let values = self.ratios(spec);
                let m = median(&values)?;
                Some(json!({
                    "name": spec.name, "numerator": spec.numerator, "denominator": spec.denominator,
                    "median": m, "per_repetition": values, "target_at_least": spec.at_least,
                    "target_met": spec.at_least.map(|t| m >= t),
                }))
            })
            .collect();
        json!({"figures": figures, "ratios": ratios})
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
