//! # gm-store-contract
//!
//! The store contract: what every store behind the platform's ports must answer, written
//! once and run against each store. The SQLite store (`embedded/tests/store_contract.rs`)
//! and the PostgreSQL store (`postgres/tests/store_contract.rs`) each give a [`Fixture`] —
//! a fresh, empty store and a way to read a table's player ids — and expand
//! [`store_contract_tests!`], which makes one `#[tokio::test]` per case.
//!
//! The cases pin numbers: events go through `gm_projections::project::changes` (what the
//! workers do) or hand-built change sets, and every read model's answer is compared with
//! figures worked out by hand in the case. Both stores must give the same answers for the
//! same input; a rewrite of a store's write or query path that changes a number fails here.
//!
//! Adding a case: write `pub async fn name<F: Fixture>(f: F)` in a module of `cases/`, and
//! add `module::name` to the list in [`store_contract_tests!`] (a unit test below checks that
//! every case is listed). A test that only one store can have (PostgreSQL races and
//! partitions, SQLite file details) stays in that adapter's tests.
//!
//! A dev-dependency only (`publish = false`): the production binary never links it.

use async_trait::async_trait;
use gm_ports::SnapshotStore;
use gm_privacy::PrivacyStore;
use gm_projections::recommend::RecommendationStore;
use gm_projections::{AnalyticsQueries, GameQueries, ReadModelStore, RecommendationQueries};

pub mod cases;
pub mod data;

/// Every port a store of the platform implements.
pub trait ContractStore:
    ReadModelStore
    + AnalyticsQueries
    + GameQueries
    + RecommendationQueries
    + RecommendationStore
    + PrivacyStore
    + SnapshotStore
    + 'static
{
}

impl<T> ContractStore for T where
    T: ReadModelStore
        + AnalyticsQueries
        + GameQueries
        + RecommendationQueries
        + RecommendationStore
        + PrivacyStore
        + SnapshotStore
        + 'static
{
}

/// A fresh, empty store for one case (dropped, with its database, when the case ends).
#[async_trait]
pub trait Fixture: Send + Sync + 'static {
    type Store: ContractStore;

    fn store(&self) -> &Self::Store;

    /// Every row's `(game_id, player_id)` in the live read-model table `table` (any order,
    /// duplicates kept): what erasure cases read to prove that no row names the player.
    async fn player_rows(&self, table: &str) -> Vec<(String, String)>;

    /// The `player_id` of every row of `table`, sorted bytewise.
    async fn player_ids(&self, table: &str) -> Vec<String> {
        let mut ids: Vec<String> = self.player_rows(table).await.into_iter().map(|(_, p)| p).collect();
        ids.sort();
        ids
    }
}

/// The read-model tables that hold `game_id` and `player_id` columns, in both stores.
pub const PLAYER_TABLES: &[&str] = &[
    "player_profiles",
    "profile_revenue",
    "player_days",
    "payer_days",
    "leaderboard_scores",
    "cohort_players",
    "cohort_days",
    "funnel_players",
    "reco_affinity",
    "reco_outbox",
];

/// One `#[tokio::test]` per contract case, each on a fresh fixture from `$fresh` (an async
/// fn returning a [`Fixture`]). Expand it once in a store's test file:
///
/// ```text
/// async fn fresh() -> SqliteFixture { … }
/// gm_store_contract::store_contract_tests!(fresh);
/// ```
#[macro_export]
macro_rules! store_contract_tests {
    ($fresh:path) => {
        $crate::store_contract_tests!(@cases $fresh;
            snapshots::snapshots_are_saved_with_their_watermark_and_loaded_in_batches,
            snapshots::a_snapshot_save_from_a_stale_watermark_is_refused_and_saves_nothing,
            checkpoints::apply_with_a_wrong_expected_checkpoint_changes_nothing,
            checkpoints::applying_the_same_batch_twice_counts_it_once,
            checkpoints::re_applying_any_projection_with_a_stale_checkpoint_changes_no_answer,
            checkpoints::a_rebuild_swaps_rows_and_checkpoints_and_leaves_other_projections,
            checkpoints::rebuilding_every_projection_from_the_events_gives_the_live_answers,
            checkpoints::apply_batch_of_every_projection_gives_the_answers_of_separate_applies,
            read_models::dau_wau_mau_and_revenue_per_payer_on_hand_built_change_sets,
            read_models::sessions_funnel_and_profiles_add_up_across_and_within_batches,
            read_models::erasure_keeps_dau_and_payer_counts_under_one_pseudonym,
            read_models::times_are_kept_to_the_millisecond,
            read_models::funnel_counts_distinct_players_and_the_median_time_to_complete,
            scenario::events_through_every_projection_give_the_pinned_figures,
            scenario::an_erasure_through_every_projection_leaves_no_row_and_keeps_aggregates,
            scenario::events_after_an_erasure_in_the_same_batch_count_as_a_new_player,
            games::leaderboard_keeps_best_scores_ranks_ties_bytewise_and_forgets_an_erased_player,
            games::leaderboard_pages_and_standings_at_the_edges,
            games::retention_follows_the_earliest_day_and_survives_erasure_anonymised,
            games::monetisation_over_a_range_counts_distinct_players_and_player_days,
            counters::counters_equal_a_count_from_scratch_over_late_days_and_erasures,
            counters::a_rebuild_of_the_counted_projections_gives_the_live_counters,
            reco::co_occurrence_recommends_unowned_items_backfills_and_erasure_tombstones,
            reco::scoring_many_players_at_once_equals_scoring_each_alone,
            privacy::a_new_player_keeps_the_first_key_and_pseudonym_created,
            privacy::erasure_destroys_the_key_suppresses_and_completes_once,
            privacy::erasing_a_player_never_seen_holds_nothing_and_suppresses,
            privacy::audit_trail_is_newest_first_and_limited_to_the_games_asked,
            privacy::erasures_list_the_latest_first_by_game_and_status,
        );
    };
    (@cases $fresh:path; $($module:ident :: $case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::cases::$module::$case($fresh().await).await;
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    /// Every `pub async fn` of `cases/` is in the macro's list (a case left out would
    /// silently never run).
    #[test]
    fn every_case_is_listed_in_the_macro() {
        let lib = include_str!("lib.rs");
        let start = lib.find("(@cases $fresh;").expect("the macro's list");
        let listed = &lib[start..start + lib[start..].find(");").expect("the list's end")];
        let modules = [
            ("snapshots", include_str!("cases/snapshots.rs")),
            ("checkpoints", include_str!("cases/checkpoints.rs")),
            ("read_models", include_str!("cases/read_models.rs")),
            ("scenario", include_str!("cases/scenario.rs")),
            ("games", include_str!("cases/games.rs")),
            ("counters", include_str!("cases/counters.rs")),
            ("reco", include_str!("cases/reco.rs")),
            ("privacy", include_str!("cases/privacy.rs")),
        ];
        let listed: Vec<&str> = listed
            .lines()
            .map(str::trim)
            .filter(|l| l.ends_with(',') && l.contains("::") && !l.contains('$'))
            .map(|l| l.trim_end_matches(','))
            .collect();
        let mut defined = Vec::new();
        for (module, source) in modules {
            for line in source.lines() {
                let Some(rest) = line.strip_prefix("pub async fn ") else { continue };
                defined.push(format!("{module}::{}", rest.split('<').next().unwrap_or_default()));
            }
        }
        for case in &defined {
            assert!(listed.contains(&case.as_str()), "{case} is not in the macro's list");
        }
        assert_eq!(listed.len(), defined.len(), "listed: {listed:?}, defined: {defined:?}");
    }
}
