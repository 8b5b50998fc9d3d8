//! Keyed spawns, messages and releases store their typed answer and replay it typed: the
//! stored JSON keeps its shape (older rows replay too), and a stored answer that is not
//! the answer it should be is a store error, never a made-up one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use centaur_core::Harness;
use centaur_store::assignments;
use centaur_store::audit::Actor;
use centaur_store::messages::{self, NewMessage};
use centaur_store::{StoreError, TurnError};
use serde_json::{json, Value};
use sqlx::PgPool;

async fn stored(pool: &PgPool, table: &str, key_column: &str, key: &str) -> Value {
    sqlx::query_scalar(&format!(
        "SELECT response_json FROM {table} WHERE {key_column} = $1"
    ))
    .bind(key)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_replayed_spawn_is_the_stored_answer_marked_idempotent(pool: PgPool) {
    let first = assignments::spawn(
        &pool,
        "t1",
        Some("s1"),
        Some(Harness::Echo),
        Harness::Codex,
        "h",
    )
    .await
    .unwrap();
    assert!(!first.idempotent);
    assert_eq!(first.harness, Harness::Echo);
    assert_eq!(
        stored(&pool, "spawn_requests", "spawn_id", "s1").await,
        json!({
            "ok": true, "thread_key": "t1", "assignment_generation": 1,
            "assignment_state": "assigned_idle", "harness": "echo",
            "prompt_ref": "prompts/echo/v1", "repo": null,
        })
    );
    let again = assignments::spawn(
        &pool,
        "t1",
        Some("s1"),
        Some(Harness::Echo),
        Harness::Codex,
        "h",
    )
    .await
    .unwrap();
    assert!(again.idempotent);
    assert_eq!(
        (again.assignment_generation, again.harness, again.prompt_ref),
        (1, Harness::Echo, first.prompt_ref)
    );
    let mismatch = assignments::spawn(
        &pool,
        "t1",
        Some("s1"),
        Some(Harness::Echo),
        Harness::Codex,
        "other",
    )
    .await
    .map(|_| ())
    .expect_err("another payload");
    assert!(matches!(
        mismatch,
        TurnError::IdempotencyMismatch {
            key_name: "spawn_id",
            ..
        }
    ));
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn replayed_messages_and_releases_are_typed_too(pool: PgPool) {
    assignments::spawn(&pool, "t1", None, Some(Harness::Echo), Harness::Codex, "h")
        .await
        .unwrap();
    let mut message = NewMessage::user_text("hello", "mh".into());
    message.message_id = Some("m1".into());
    let operator = Actor::local_operator(None);
    let first = messages::post(&pool, "t1", 1, &[message.clone()], &operator)
        .await
        .unwrap();
    let again = messages::post(&pool, "t1", 1, &[message], &operator)
        .await
        .unwrap();
    assert_eq!(first[0].message_id, "m1");
    assert!(!first[0].idempotent && again[0].idempotent);
    assert_eq!(again[0].stored_event_id, first[0].stored_event_id);

    let released = assignments::release(&pool, "t1", Some("r1"), false, "rh", &operator)
        .await
        .unwrap();
    let replayed = assignments::release(&pool, "t1", Some("r1"), false, "rh", &operator)
        .await
        .unwrap();
    assert!(released.released && !released.idempotent);
    assert!(replayed.released && replayed.idempotent);
    assert_eq!(replayed.assignment_generation, Some(1));
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_stored_answer_that_does_not_parse_is_a_store_error(pool: PgPool) {
    assignments::spawn(
        &pool,
        "t1",
        Some("s1"),
        Some(Harness::Echo),
        Harness::Codex,
        "h",
    )
    .await
    .unwrap();
    sqlx::query("UPDATE spawn_requests SET response_json = '{\"ok\": true}' WHERE spawn_id = 's1'")
        .execute(&pool)
        .await
        .unwrap();
    let err = assignments::spawn(
        &pool,
        "t1",
        Some("s1"),
        Some(Harness::Echo),
        Harness::Codex,
        "h",
    )
    .await
    .map(|_| ())
    .expect_err("a corrupt stored answer");
    match err {
        TurnError::Store(StoreError::Corrupt(why)) => {
            assert!(
                why.contains("spawn_requests") && why.contains("s1"),
                "{why}"
            )
        }
        other => panic!("expected a corrupt-data error, got {other:?}"),
    }
}
