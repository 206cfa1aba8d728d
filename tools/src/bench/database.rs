//! A fresh, migrated PostgreSQL database for one bench run, dropped at the end.

use anyhow::Context as _;

/// A database created through the configured (admin) URL.
pub(super) struct BenchDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl BenchDatabase {
    pub async fn create(admin_url: &str, id: &str) -> anyhow::Result<Self> {
        use sqlx::Connection as _;
        let name = format!("gm_bench_{}", &id[..16]);
        let mut admin =
            sqlx::PgConnection::connect(admin_url).await.context("connecting to PostgreSQL (postgres.url)")?;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.context("CREATE DATABASE")?;
        let _ = admin.close().await;
        let (base, _) = admin_url.rsplit_once('/').context("postgres.url must end with /database")?;
        let (base, query) = match admin_url.split_once('?') {
            Some((_, q)) => (base.to_string(), format!("?{q}")),
            None => (base.to_string(), String::new()),
        };
        let url = format!("{base}/{name}{query}");
        let store = gm_postgres::PgStore::connect(&url, 2).await.context("connecting to the bench database")?;
        store.migrate().await.context("migrating the bench database")?;
        store.pool().close().await;
        Ok(Self { admin_url: admin_url.to_string(), name, url })
    }

    pub async fn drop_database(&self) {
        use sqlx::Connection as _;
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ =
                sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut admin).await;
        }
    }
}
