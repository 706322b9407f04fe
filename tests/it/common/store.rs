//! Store contract tests: one body per contract, run on both backends.

use meshi::store::{NewUser, Store, UserRow};

/// The clock every store contract writes with, in ms.
pub const NOW: i64 = 1_700_000_000_000;

/// A new member named `handle` (display name the same) with this password
/// hash, created at [`NOW`].
pub fn member<'a>(handle: &'a str, hash: Option<&'a str>) -> NewUser<'a> {
    NewUser {
        handle,
        display_name: handle,
        password_hash: hash,
        external_sub: None,
        role: "member",
        now: NOW,
    }
}

/// A member named `handle` with a stub password hash, stored.
pub async fn user(store: &Store, handle: &str) -> UserRow {
    store
        .create_user(member(handle, Some("$argon2id$stub")))
        .await
        .unwrap_or_else(|e| panic!("create user {handle}: {e}"))
}

pub fn tags(list: &[&str]) -> Vec<String> {
    list.iter().map(|t| (*t).to_owned()).collect()
}

/// A migrated store on a fresh SQLite file; the directory keeps it alive.
pub async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = Store::connect(&url).await.expect("connect to SQLite");
    store.migrate().await.expect("migrate SQLite");
    (store, dir)
}

/// A migrated store on a fresh Postgres database.
pub async fn postgres_store() -> Store {
    let url = super::postgres::fresh_database().await;
    let store = Store::connect(&url).await.expect("connect to Postgres");
    store.migrate().await.expect("migrate Postgres");
    store
}

/// Generates `sqlite::<name>` and `postgres::<name>` for each contract fn
/// `async fn <name>(store: &Store)` at the root of the test crate.
#[macro_export]
macro_rules! store_contract {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, _dir) = $crate::common::store::sqlite_store().await;
                    assert_eq!(store.backend(), "sqlite");
                    super::$name(&store).await;
                }
            )+
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let store = $crate::common::store::postgres_store().await;
                    assert_eq!(store.backend(), "postgres");
                    super::$name(&store).await;
                }
            )+
        }
    };
}
