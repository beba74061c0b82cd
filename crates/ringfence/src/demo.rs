//! Realistic synthetic data for `ringfence demo` (being written).

use crate::app::Resources;

pub async fn run_demo(_resources: &Resources, _calls: usize, _progress: bool) -> anyhow::Result<serde_json::Value> {
    anyhow::bail!("the demo data generator is not built yet")
}
