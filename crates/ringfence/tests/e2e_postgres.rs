#![allow(
    clippy::unwrap_used,
    clippy::type_complexity,
    clippy::too_many_arguments
)]

//! The end-to-end suite on PostgreSQL: the same test files as `e2e`, each test with a call
//! log and a vault of its own on the server `RINGFENCE_TEST_DATABASE_URL` names (see
//! `common::Backing`). Left out, with the reason:
//! - `backup`: copies and restores SQLite files (PostgreSQL: pg_dump, and `ringfence replay` in postgres_ops).
//! - `canary`: scans the data folder, where SQLite keeps the databases (PostgreSQL residue: postgres_ops).
//! - `crash`: kills the server around SQLite's redo log and checkpoints (PostgreSQL crash tests: postgres_ops).
//! - `sqlite_only`: the SQLite files' write-ahead log, and `ringfence backup`'s copies of them.
//! - `readme`: follows the README's tour, which runs on the embedded defaults.

/// This binary runs the suite on PostgreSQL.
const ON_POSTGRES: bool = true;

#[path = "e2e/access_admin.rs"]
mod access_admin;
#[path = "e2e/browser.rs"]
mod browser;
#[path = "e2e/calls.rs"]
mod calls;
#[path = "e2e/ceiling.rs"]
mod ceiling;
#[path = "e2e/checklist.rs"]
mod checklist;
#[path = "e2e/cli.rs"]
mod cli;
#[path = "e2e/common.rs"]
mod common;
#[path = "e2e/consent.rs"]
mod consent;
#[path = "e2e/contention.rs"]
mod contention;
#[path = "e2e/day_to_day.rs"]
mod day_to_day;
#[path = "e2e/demo.rs"]
mod demo;
#[path = "e2e/export.rs"]
mod export;
#[path = "e2e/ingest_rules.rs"]
mod ingest_rules;
#[path = "e2e/matrix.rs"]
mod matrix;
#[path = "e2e/postgres_ops.rs"]
mod postgres_ops;
#[path = "e2e/races.rs"]
mod races;
#[path = "e2e/recipients.rs"]
mod recipients;
#[path = "e2e/recordings.rs"]
mod recordings;
#[path = "e2e/redaction.rs"]
mod redaction;
#[path = "e2e/retention.rs"]
mod retention;
#[path = "e2e/twilio.rs"]
mod twilio;
#[path = "e2e/validation.rs"]
mod validation;
#[path = "e2e/vault.rs"]
mod vault;
#[path = "e2e/web.rs"]
mod web;
#[path = "e2e/web_language.rs"]
mod web_language;
