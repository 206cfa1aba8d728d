//! Separate roles as separate processes on Kafka + PostgreSQL + Redis: one gateway, two
//! actors processes and two projections processes sharing partitions through consumer
//! groups. SIGKILL one actors and one projections process under load: the survivors take
//! their partitions over and every read model still equals the independent counts.

mod common;

use common::services::{Role, TestServices};
use common::*;
use gamemetrics::simulate;
use std::time::Duration;

#[actix_rt::test]
async fn killing_an_actors_and_a_projections_process_under_load_loses_and_doubles_nothing() {
    let services = TestServices::create().await;
    let keys = format!("{GAME}={KEY}");
    let gateway = Role::start("gateway", &services, &keys);
    let mut actors_a = Role::start("actors", &services, &keys);
    let _actors_b = Role::start("actors", &services, &keys);
    let mut projections_a = Role::start("projections", &services, &keys);
    let _projections_b = Role::start("projections", &services, &keys);
    for role in [&gateway, &actors_a, &_actors_b, &projections_a, &_projections_b] {
        role.wait_ready().await;
    }

    let mut options = sim_options(&gateway.url(), 600);
    options.rate = 3000.0;
    let plan = simulate::plan(&options, chrono::Utc::now());
    let planned = plan.len();
    let traffic = actix_rt::spawn(simulate::send(options, plan));
    actix_rt::time::sleep(Duration::from_secs(3)).await;
    actors_a.kill();
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    projections_a.kill();
    let report = traffic.await.unwrap();
    assert_eq!(report.accepted.len(), planned, "{}", report.summary());

    let expected = Expected::from_events(&report.accepted);
    eventually(Duration::from_secs(240), || compare_read_models(gateway.url(), &expected, 60)).await.unwrap();
    services.drop_database().await;
}
