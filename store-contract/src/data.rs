//! What the cases feed the stores: names, days, processed events as the actors emit them,
//! hand-built change sets, and the scenario of `cases::scenario` (four players of one game
//! and one of another over nine days, in two batches).

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use gm_ports::StoreError;
use gm_projections::leaderboard::{BoardPeriod, LeaderboardPage, Period};
use gm_projections::model::{
    ActiveUsersDay, ChangeSet, DateRange, FunnelDelta, FunnelStep, PlayerDay, PlayerProfile, ProfileDelta,
    ProjectionName, RevenueDay, RevenueDelta, SessionsDay, Target,
};
use gm_projections::project::changes;
use gm_projections::recommend::RecommendationList;
use gm_projections::retention::{Monetisation, NewReturningDay, RetentionCohort};
use gm_schemas::events::{
    ConsentUpdate, Design, EventBody, ItemUse, ProfileUpdate, Progression, ProgressionStatus, Purchase, Resource,
    ResourceFlow, Score, SessionEnd, SessionStart,
};
use gm_schemas::{
    ClosedSession, Currency, Derived, GameId, MinorUnits, Name, PlayerId, ProcessedBody, ProcessedEvent, SessionId,
};
use uuid::Uuid;

use crate::ContractStore;

pub const GAME: &str = "space-race";
pub const OTHER_GAME: &str = "moon-race";

pub fn game() -> GameId {
    GameId::parse(GAME).unwrap()
}
pub fn other_game() -> GameId {
    GameId::parse(OTHER_GAME).unwrap()
}
pub fn pid(p: &str) -> PlayerId {
    PlayerId::parse(p).unwrap()
}

/// The master key of the privacy cases.
pub fn master() -> gm_privacy::MasterKey {
    gm_privacy::MasterKey::from_bytes([3; 32])
}

/// What a gateway sends for a player it has not cached: a fresh key of its own each time.
pub fn new_player_in(game: GameId, player: PlayerId) -> gm_privacy::NewPlayer {
    let master = master();
    gm_privacy::NewPlayer {
        subject: master.subject_hasher().subject(&game, &player),
        pseudonym: master.pseudonymizer().pseudonym(&game, &player),
        wrapped_key: master.wrap(&gm_privacy::DataKey::generate().unwrap()).unwrap(),
        game_id: game,
        player_id: player,
    }
}
pub fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}
pub fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}
pub fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}
/// Day `n` of January 2024 (hand-built change sets).
pub fn jan(n: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, n).unwrap()
}
/// 10:00 UTC on day `n` of January 2024.
pub fn jan_at(n: u32) -> DateTime<Utc> {
    jan(n).and_hms_opt(10, 0, 0).unwrap().and_utc()
}
/// Day `n` of March 2024 (the scenario; Monday 4 March starts an ISO week).
pub fn mar(n: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 3, n).unwrap()
}
/// 2024-03-`d` `h`:`m` UTC.
pub fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, d, h, m, 0).unwrap()
}
pub fn range(from: NaiveDate, to: NaiveDate) -> DateRange {
    DateRange::parse(from, to).unwrap()
}
pub fn player_days(game: &GameId, list: &[(&str, NaiveDate)]) -> Vec<PlayerDay> {
    list.iter().map(|(p, d)| PlayerDay { game_id: game.clone(), day: *d, player_id: pid(p) }).collect()
}

/// A profile delta of player `p` of [`game`] seen from day `first` to day `last` (January).
pub fn profile(p: &str, first: u32, last: u32, events: u64) -> ProfileDelta {
    ProfileDelta {
        game_id: game(),
        player_id: pid(p),
        first_seen: jan_at(first),
        last_seen: jan_at(last),
        events,
        sessions: 1,
        playtime_seconds: 100,
        purchases: 1,
        levels_completed: 0,
        xp: 5,
        current_level: None,
        country: Some("DE".into()),
        language: None,
        consent: None,
        revenue: vec![(usd(), 199)],
        last_seq: events,
    }
}

pub fn board(period: Period, start: NaiveDate) -> BoardPeriod {
    BoardPeriod { game_id: game(), board: "main".into(), period, start }
}

/// One funnel delta: `starts` starts and one completion of `level`.
pub fn funnel(level: &str, starts: u64) -> ChangeSet {
    ChangeSet {
        funnel: vec![FunnelDelta { game_id: game(), level_id: level.into(), starts, completes: 1, fails: 0 }],
        ..Default::default()
    }
}

/// On 10 January: 600 + 400 USD cents and 500 EUR cents; p1 and p3 paid.
pub fn revenue_batch() -> ChangeSet {
    ChangeSet {
        revenue: vec![
            RevenueDelta { game_id: game(), day: jan(10), currency: usd(), amount_minor: 600, purchases: 1 },
            RevenueDelta { game_id: game(), day: jan(10), currency: usd(), amount_minor: 400, purchases: 1 },
            RevenueDelta { game_id: game(), day: jan(10), currency: eur(), amount_minor: 500, purchases: 1 },
        ],
        payer_days: player_days(&game(), &[("p1", jan(10)), ("p3", jan(10))]),
        ..Default::default()
    }
}

// ---------------------------------------------------------------- processed events

/// A processed event of `player` (game [`game`]).
pub fn ev(player: &str, seq: u64, t: DateTime<Utc>, body: EventBody) -> ProcessedEvent {
    ev_in(&game(), player, seq, t, body, Derived::default())
}

pub fn ev_in(
    game: &GameId,
    player: &str,
    seq: u64,
    t: DateTime<Utc>,
    body: EventBody,
    derived: Derived,
) -> ProcessedEvent {
    ProcessedEvent {
        game_id: game.clone(),
        player_id: pid(player),
        seq,
        event_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("{game}/{player}/{seq}").as_bytes()),
        timestamp: t,
        received_at: t,
        body: ProcessedBody::Event { event: body, derived },
    }
}

pub fn erased_ev(player: &str, seq: u64, t: DateTime<Utc>, erasure_id: Uuid) -> ProcessedEvent {
    ProcessedEvent {
        game_id: game(),
        player_id: pid(player),
        seq,
        event_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("{GAME}/{player}/{seq}").as_bytes()),
        timestamp: t,
        received_at: t,
        body: ProcessedBody::PlayerErased { erasure_id, requested_at: t },
    }
}

/// The first event of session `id`: `derived.session_started`, and the session it closed.
pub fn start(player: &str, seq: u64, t: DateTime<Utc>, id: &str, closes: Option<ClosedSession>) -> ProcessedEvent {
    let derived = Derived {
        session_id: Some(SessionId::parse(id).unwrap()),
        session_started: true,
        closed_session: closes,
        ..Derived::default()
    };
    ev_in(&game(), player, seq, t, EventBody::SessionStart(SessionStart::default()), derived)
}

pub fn closed(id: &str, started_at: DateTime<Utc>, length_seconds: u64) -> ClosedSession {
    ClosedSession {
        session_id: SessionId::parse(id).unwrap(),
        started_at,
        ended_at: started_at + Duration::seconds(length_seconds as i64),
        length_seconds,
    }
}

/// A `session_end` closing session `id`, started at `started_at`, `length_seconds` long.
pub fn end(player: &str, seq: u64, id: &str, started_at: DateTime<Utc>, length_seconds: u64) -> ProcessedEvent {
    let derived = Derived {
        session_id: Some(SessionId::parse(id).unwrap()),
        session_started: false,
        closed_session: Some(closed(id, started_at, length_seconds)),
        ..Derived::default()
    };
    let t = started_at + Duration::seconds(length_seconds as i64);
    ev_in(&game(), player, seq, t, EventBody::SessionEnd(SessionEnd::default()), derived)
}

pub fn buy(amount: i64, currency: Currency, item: &str) -> EventBody {
    EventBody::Purchase(Purchase {
        amount_minor: MinorUnits::parse(amount).unwrap(),
        currency,
        item_id: name(item),
        quantity: 1,
        store: None,
    })
}
pub fn prog(status: ProgressionStatus, level: &str, score: Option<i64>) -> EventBody {
    EventBody::Progression(Progression { status, level_id: name(level), score })
}
pub fn score(value: i64) -> EventBody {
    EventBody::Score(Score { board: name("main"), value })
}
pub fn use_item(item: &str) -> EventBody {
    EventBody::ItemUse(ItemUse { item_id: name(item), quantity: 1 })
}
pub fn sink(item: &str) -> EventBody {
    EventBody::Resource(Resource {
        flow: ResourceFlow::Sink,
        virtual_currency: name("gems"),
        amount: 10,
        item_id: Some(name(item)),
    })
}
pub fn design() -> EventBody {
    EventBody::Design(Design { event_id: name("tutorial:skipped"), value: None })
}

/// The scenario, in two batches (each player's events in `seq` order across them):
///
/// | player | events |
/// |---|---|
/// | alice | 4 Mar: session (10:00, 2,400 s), level-1 start and complete (score 100), buys a sword (499 USD), scores 1,200. 5 Mar (batch 2): session from 09:00 (1,500 s, closed by her next session), uses a shield, scores 900, sets country DE and language de, consent (analytics yes, personalisation no). 11 Mar: session, scores 300 |
/// | bob | 4 Mar: session (11:00, 780 s), level-1 start and fail, buys a shield (999 EUR) and a sword (199 USD), scores 1,200; 5 Mar: session, scores 50 |
/// | carol (batch 2) | 5 Mar: session from 20:00 (30 s, closed by her next), level-1 start and complete (score 40), level-2 start, buys a sword (499 USD), spends gems on a potion, scores 2,000. 12 Mar: session |
/// | dave | 6 Mar: session, uses a potion, scores 10; in batch 2 a late event of 4 Mar 23:59 (design) |
/// | alice of moon-race | 4 Mar: session, buys a rocket (100 USD), scores 5 |
pub fn scenario() -> [Vec<ProcessedEvent>; 2] {
    use ProgressionStatus::*;
    let moon = other_game();
    let first = vec![
        start("alice", 1, at(4, 10, 0), "s-a1", None),
        ev("alice", 2, at(4, 10, 5), prog(Start, "level-1", None)),
        ev("alice", 3, at(4, 10, 20), prog(Complete, "level-1", Some(100))),
        ev("alice", 4, at(4, 10, 25), buy(499, usd(), "sword")),
        ev("alice", 5, at(4, 10, 30), score(1200)),
        end("alice", 6, "s-a1", at(4, 10, 0), 2400),
        start("bob", 1, at(4, 11, 0), "s-b1", None),
        ev("bob", 2, at(4, 11, 5), prog(Start, "level-1", None)),
        ev("bob", 3, at(4, 11, 6), prog(Fail, "level-1", None)),
        ev("bob", 4, at(4, 11, 10), buy(999, eur(), "shield")),
        ev("bob", 5, at(4, 11, 11), buy(199, usd(), "sword")),
        ev("bob", 6, at(4, 11, 12), score(1200)),
        end("bob", 7, "s-b1", at(4, 11, 0), 780),
        start("dave", 1, at(6, 7, 0), "s-d1", None),
        ev("dave", 2, at(6, 7, 1), use_item("potion")),
        ev("dave", 3, at(6, 7, 2), score(10)),
        ev_in(&moon, "alice", 1, at(4, 12, 0), EventBody::SessionStart(SessionStart::default()), session("s-m1")),
        ev_in(&moon, "alice", 2, at(4, 12, 1), buy(100, usd(), "rocket"), Derived::default()),
        ev_in(&moon, "alice", 3, at(4, 12, 2), score(5), Derived::default()),
    ];
    let second = vec![
        start("alice", 7, at(5, 9, 0), "s-a2", None),
        ev("alice", 8, at(5, 9, 10), use_item("shield")),
        ev("alice", 9, at(5, 9, 15), score(900)),
        ev(
            "alice",
            10,
            at(5, 9, 20),
            EventBody::ProfileUpdate(ProfileUpdate { country: Some("DE".into()), language: Some("de".into()) }),
        ),
        ev(
            "alice",
            11,
            at(5, 9, 21),
            EventBody::ConsentUpdate(ConsentUpdate { analytics: true, personalisation: false }),
        ),
        start("alice", 12, at(11, 8, 0), "s-a3", Some(closed("s-a2", at(5, 9, 0), 1500))),
        ev("alice", 13, at(11, 8, 5), score(300)),
        start("bob", 8, at(5, 12, 0), "s-b2", None),
        ev("bob", 9, at(5, 12, 1), score(50)),
        start("carol", 1, at(5, 20, 0), "s-c1", None),
        ev("carol", 2, at(5, 20, 1), prog(Start, "level-1", None)),
        ev("carol", 3, at(5, 20, 2), prog(Complete, "level-1", Some(40))),
        ev("carol", 4, at(5, 20, 3), prog(Start, "level-2", None)),
        ev("carol", 5, at(5, 20, 4), buy(499, usd(), "sword")),
        ev("carol", 6, at(5, 20, 5), sink("potion")),
        ev("carol", 7, at(5, 20, 6), score(2000)),
        start("carol", 8, at(12, 20, 0), "s-c2", Some(closed("s-c1", at(5, 20, 0), 30))),
        ev("dave", 4, at(4, 23, 59), design()),
    ];
    [first, second]
}

fn session(id: &str) -> Derived {
    Derived { session_id: Some(SessionId::parse(id).unwrap()), session_started: true, ..Derived::default() }
}

/// Applies `batches` to every projection through `project::changes`, each batch on
/// partition 0, one offset per event, from an empty checkpoint: what the workers do.
/// Returns the checkpoint every projection ends on.
pub async fn project_all<S: ContractStore>(store: &S, target: Target, batches: &[Vec<ProcessedEvent>]) -> u64 {
    project_from(store, target, None, batches).await
}

/// [`project_all`] from the checkpoint `start`.
pub async fn project_from<S: ContractStore>(
    store: &S,
    target: Target,
    start: Option<u64>,
    batches: &[Vec<ProcessedEvent>],
) -> u64 {
    let mut checkpoint = start;
    for batch in batches {
        let next = checkpoint.unwrap_or(0) + batch.len() as u64;
        for projection in ProjectionName::ALL {
            let found = store.checkpoint(target, projection, 0).await.unwrap();
            assert_eq!(found, checkpoint, "{projection}: checkpoint before the batch");
            store.apply(target, projection, 0, checkpoint, next, &changes(projection, batch)).await.unwrap();
        }
        checkpoint = Some(next);
    }
    checkpoint.unwrap_or(0)
}

// ---------------------------------------------------------------- every answer at once

/// Every query's answer about the scenario's games: what two stores (or one store before and
/// after a step) are compared on.
#[derive(Debug, Clone, PartialEq)]
pub struct Answers {
    pub profiles: Vec<Option<PlayerProfile>>,
    pub active_users: Vec<ActiveUsersDay>,
    pub sessions: Vec<SessionsDay>,
    pub revenue: Vec<RevenueDay>,
    pub funnel: Vec<FunnelStep>,
    pub boards: Vec<LeaderboardPage>,
    pub retention: Vec<RetentionCohort>,
    pub new_returning: Vec<NewReturningDay>,
    pub monetisation: Monetisation,
    pub recommendations: Vec<RecommendationList>,
    pub other_game: (Vec<ActiveUsersDay>, Vec<RevenueDay>, Option<PlayerProfile>),
}

pub const PLAYERS: [&str; 5] = ["alice", "bob", "carol", "dave", "nobody"];

/// The time recommendations are scored at in the scenario's cases.
pub fn scoring_now() -> DateTime<Utc> {
    at(13, 0, 0)
}

pub async fn answers<S: ContractStore>(store: &S) -> Result<Answers, StoreError> {
    let (g, moon) = (game(), other_game());
    let days = range(mar(1), mar(14));
    let mut profiles = Vec::new();
    let mut recommendations = Vec::new();
    for p in PLAYERS {
        profiles.push(store.player_profile(&g, &pid(p)).await?);
        recommendations.push(store.recommendations(&g, &pid(p), 5, 14.0, scoring_now()).await?);
    }
    let mut boards = Vec::new();
    for b in [
        board(Period::Daily, mar(4)),
        board(Period::Daily, mar(5)),
        board(Period::Weekly, mar(4)),
        board(Period::Weekly, mar(11)),
        board(Period::AllTime, gm_projections::leaderboard::ALL_TIME_START),
    ] {
        boards.push(store.leaderboard(&b, 0, 10).await?);
    }
    Ok(Answers {
        profiles,
        active_users: store.active_users(&g, days).await?,
        sessions: store.sessions(&g, days).await?,
        revenue: store.revenue(&g, days).await?,
        funnel: store.funnel(&g).await?,
        boards,
        retention: store.retention(&g, days).await?,
        new_returning: store.new_returning(&g, days).await?,
        monetisation: store.monetisation(&g, days).await?,
        recommendations,
        other_game: (
            store.active_users(&moon, days).await?,
            store.revenue(&moon, days).await?,
            store.player_profile(&moon, &pid("alice")).await?,
        ),
    })
}
