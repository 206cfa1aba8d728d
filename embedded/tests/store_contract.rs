//! The store contract (`store-contract/`, gm-store-contract) on the SQLite store: every case
//! on a fresh `store.db` of its own; plus what only the SQLite store has (its index names).

use async_trait::async_trait;
use gm_embedded::SqliteStore;
use gm_projections::model::{ChangeSet, PlayerDay, ProjectionName, Target};
use gm_projections::ReadModelStore;
use gm_schemas::{GameId, PlayerId};
use gm_store_contract::Fixture;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};

struct Sqlite {
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

impl Sqlite {
    /// A read-only connection of its own to the store's file (WAL: it sees every commit).
    async fn connect(&self) -> SqliteConnection {
        SqliteConnectOptions::new().filename(self.store.path()).read_only(true).connect().await.unwrap()
    }
}

#[async_trait]
impl Fixture for Sqlite {
    type Store = SqliteStore;

    fn store(&self) -> &SqliteStore {
        &self.store
    }

    async fn player_rows(&self, table: &str) -> Vec<(String, String)> {
        let mut conn = self.connect().await;
        sqlx::query_as(&format!("SELECT game_id, player_id FROM {table}")).fetch_all(&mut conn).await.unwrap()
    }
}

async fn fresh() -> Sqlite {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("store.db")).await.unwrap();
    Sqlite { store, _dir: dir }
}

gm_store_contract::store_contract_tests!(fresh);

/// A rebuild table's indexes carry the rebuild table's name; the swap gives them the live
/// names again (a second rebuild would otherwise collide with them).
#[tokio::test]
async fn a_rebuild_swap_gives_the_indexes_their_live_names() {
    let f = fresh().await;
    let activity = ProjectionName::DailyActivity;
    let day = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    let row = PlayerDay { game_id: GameId::parse("g").unwrap(), day, player_id: PlayerId::parse("p").unwrap() };
    let changes = ChangeSet { active_days: vec![row], ..Default::default() };
    for round in 0..2 {
        f.store.begin_rebuild(activity).await.unwrap();
        f.store.apply(Target::Rebuild, activity, 0, None, 1, &changes).await.unwrap();
        f.store.finish_rebuild(activity).await.unwrap();
        let mut conn = f.connect().await;
        let indexes: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'player_days'")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(indexes, vec!["player_days_by_player".to_string()], "round {round}");
        let leftovers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE '%_rebuild%'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(leftovers, 0, "round {round}");
    }
}

/// A store written before the analytics counters existed gets them created and filled from
/// its player-day tables when it is opened: the same answers as the projections' counters.
#[tokio::test]
async fn a_store_written_before_the_counters_gets_them_filled_on_open() {
    use gm_store_contract::data::{answers, project_all, scenario};
    let f = fresh().await;
    project_all(&f.store, Target::Live, &scenario()).await;
    let kept = answers(&f.store).await.unwrap();
    assert!(kept.active_users.iter().any(|d| d.mau > 0) && kept.retention.iter().any(|c| c.d1 > 0));
    let mut conn = SqliteConnectOptions::new().filename(f.store.path()).connect().await.unwrap();
    for table in ["activity_gaps", "payer_gaps", "retention_days"] {
        sqlx::query(&format!("DROP TABLE {table}")).execute(&mut conn).await.unwrap();
    }
    drop(conn);
    let reopened = SqliteStore::open(f.store.path()).await.unwrap();
    assert_eq!(answers(&reopened).await.unwrap(), kept);
}
