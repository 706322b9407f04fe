//! Where a run starts: in this process, or spread over worker processes.
//!
//! This is the one module that knows both ways. What either way needs (the
//! context, the measuring) stands beneath it, and nothing may import `run`
//! back: scenarios or workers that did would stand in one circle with it,
//! and none of them could then be read or changed on its own.

use anyhow::Result;

use crate::ctx::Env;
use crate::measure;
use crate::report::Report;
use crate::scenario::Scenario;
use crate::worker;

/// Runs `scenario` against `env` and reports what happened; with
/// `--workers` above 1, over that many worker processes.
pub async fn run(env: Env, scenario: Scenario) -> Result<Report> {
    if env.options.workers > 1 {
        return worker::run_parent(env, scenario).await;
    }
    Ok(measure::run_in(env, scenario, None).await?.0)
}
