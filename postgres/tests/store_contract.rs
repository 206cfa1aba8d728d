//! The store contract (`store-contract/`, gm-store-contract) on PostgreSQL: every case on a
//! fresh, migrated database of its own on the server named by `GM_POSTGRES_URL` (no server
//! means failure, never a skip; see `common`).

mod common;

use async_trait::async_trait;
use common::TestDb;
use gm_postgres::PgStore;
use gm_store_contract::Fixture;

#[async_trait]
impl Fixture for TestDb {
    type Store = PgStore;

    fn store(&self) -> &PgStore {
        &self.store
    }

    async fn player_rows(&self, table: &str) -> Vec<(String, String)> {
        sqlx::query_as(&format!("SELECT game_id, player_id FROM {table}")).fetch_all(self.store.pool()).await.unwrap()
    }
}

gm_store_contract::store_contract_tests!(TestDb::new);
