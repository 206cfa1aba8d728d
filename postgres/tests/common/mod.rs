//! A fresh database per test on the real server named by `GM_POSTGRES_URL`: created, migrated,
//! and dropped again when the test ends (also when it panics). No server means failure,
//! never a skip.

#![allow(dead_code)]

use gm_postgres::PgStore;
use sqlx::{Connection, PgConnection};

pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
    pub store: PgStore,
}

pub fn admin_url() -> String {
    std::env::var("GM_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "GM_POSTGRES_URL is not set: these tests need a real PostgreSQL. \
             Run `eval \"$(scripts/services env)\"` (and `scripts/services up postgres`)."
        )
    })
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (prefix, _) = base.rsplit_once('/').expect("a postgres URL with a database path");
    match query {
        Some(q) => format!("{prefix}/{db}?{q}"),
        None => format!("{prefix}/{db}"),
    }
}

impl TestDb {
    /// Creates `gm_test_<uuid>`, migrates it and connects a store to it.
    pub async fn new() -> TestDb {
        Self::create(true).await
    }

    /// Creates the database without running the migrations.
    pub async fn unmigrated() -> TestDb {
        Self::create(false).await
    }

    async fn create(migrate: bool) -> TestDb {
        let admin_url = admin_url();
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at GM_POSTGRES_URL is unreachable: {e}"));
        let name = format!("gm_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("CREATE DATABASE");
        admin.close().await.ok();
        let url = with_database(&admin_url, &name);
        let store = PgStore::connect(&url, 8).await.expect("connect to the test database");
        if migrate {
            store.migrate().await.expect("migrations");
        }
        TestDb { name, url, admin_url, store }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin_url = self.admin_url.clone();
        // Async work in Drop: on a thread of its own with its own runtime. The store's pool is
        // not closed from here (its sockets belong to the test's runtime, blocked in this
        // drop); FORCE terminates its backends instead.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await;
                }
            });
        })
        .join();
    }
}
