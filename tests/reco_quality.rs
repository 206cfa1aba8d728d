//! The recommendations beat popularity on simulated players with planted kit preferences:
//! hit-rate@10 on held-out items at least 1.5 times the popularity baseline's.

use gamemetrics::reco_quality;

#[tokio::test]
async fn recommendations_hit_held_out_items_at_least_1_5_times_as_often_as_popularity() {
    let dir = tempfile::tempdir().unwrap();
    let report = reco_quality::run(1_500, 14, 11, dir.path()).await.unwrap();
    println!("{}", report.summary());
    assert!(report.tested >= 300, "enough players with a held-out item: {}", report.summary());
    assert!(report.popularity_hits > 0, "the baseline is not a straw man: {}", report.summary());
    assert!(report.lift() >= 1.5, "{}", report.summary());
}
