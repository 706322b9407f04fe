//! A run spread over worker processes, and one worker of such a run.
//!
//! One process holds at most as many sockets as it may open files, and the
//! hard limit on those is not the tool's to raise. With `--workers N` the
//! parent provisions the users once, then starts its own executable N times
//! as hidden `worker` subprocesses, each with an equal share of the
//! sockets and of the rate, and source addresses of its own.
//!
//! - `plan`: how the run is dealt out, whole rooms, pairs and churn rooms
//!   to one worker each, and which users each worker gets.
//! - `ipc`: the JSON lines between the parent and a worker, and how each
//!   end takes the other going away.
//! - `parent`: provisions, starts the workers, gates them into one load
//!   window and collects their summaries.
//! - `child`: one worker, running its share as a run of its own would.
//! - `merge`: the workers' reports added up into the run's.
//!
//! This file only names the parts and hands on the few names the rest of
//! the tool uses, so that nothing outside reaches into the parts.

mod child;
mod ipc;
mod merge;
mod parent;
mod plan;

pub use child::serve;
pub use ipc::COMMAND;
pub(crate) use parent::run_parent;
