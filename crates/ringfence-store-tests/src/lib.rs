//! Ringfence's store stories: one suite, every backend.
//!
//! Each story in [`stories`] takes an [`Env`] (a `Store` and a `VaultStore` behind trait
//! objects) and tells what a user of the store may rely on. [`store_stories!`] generates
//! each story once per backend: `on_sqlite` always, `on_postgres` in a database of its own
//! whenever `RINGFENCE_TEST_DATABASE_URL` names a server (see [`harness`]). Tests only: this
//! crate is never published and never linked into the product.

// The stories are tests that live in a library so that every backend's test binary can run
// them: a failed store call is the story's failure, as in any test.
#![allow(clippy::unwrap_used)]

pub mod harness;
pub mod stories;

pub use harness::Env;

/// Generates, for each named story of [`stories`], a module with one test per backend.
#[macro_export]
macro_rules! store_stories {
    ($($story:ident),* $(,)?) => {$(
        mod $story {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_sqlite() {
                $crate::harness::on_sqlite($crate::stories::$story).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_postgres() {
                $crate::harness::on_postgres($crate::stories::$story).await
            }
        }
    )*};
}
