#![allow(
    clippy::unwrap_used,
    clippy::type_complexity,
    clippy::too_many_arguments
)]

//! End-to-end tests: each test runs its own server (`Application::build` on port 0) over
//! its own temporary data folder, or the real binary where the process matters.

/// This binary runs the suite on SQLite; `e2e_postgres` runs the same files on PostgreSQL.
const ON_POSTGRES: bool = false;

mod common;

mod access_admin;
mod backup;
mod browser;
mod calls;
mod canary;
mod ceiling;
mod checklist;
mod cli;
mod consent;
mod contention;
mod crash;
mod day_to_day;
mod demo;
mod export;
mod ingest_rules;
mod matrix;
mod races;
mod readme;
mod recipients;
mod recordings;
mod redaction;
mod retention;
mod sqlite_only;
mod twilio;
mod validation;
mod vault;
mod web;
mod web_language;
