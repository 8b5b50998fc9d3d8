//! The trail's numbering: every statement that appends events bumps its thread's counter
//! once, and its rows get the numbers after the thread's last, gap-free, in `ord` order,
//! whatever other writers of the thread do at the same time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use centaur_store::events::{self, kinds};
use serde_json::json;
use sqlx::PgPool;

/// Appends `count` thread-level events to `thread` in one statement.
async fn append_many(pool: &PgPool, thread: &str, count: i64) {
    let insert = events::insert_cte(
        "appended",
        &format!(
            "SELECT $1::text AS thread_key, NULL::text AS execution_id,
                    '{}' AS event_kind, jsonb_build_object('n', n) AS event_json, n AS ord
             FROM generate_series(1, $2::bigint) AS n",
            kinds::MESSAGE
        ),
    );
    sqlx::query(&format!("WITH {insert} SELECT count(*) FROM appended"))
        .bind(thread)
        .bind(count)
        .execute(pool)
        .await
        .unwrap();
}

/// The thread's events as (thread_seq, the `n` their statement gave them), in id order.
async fn trail(pool: &PgPool, thread: &str) -> Vec<(i64, Option<i64>)> {
    sqlx::query_as(
        "SELECT thread_seq, (event_json->>'n')::bigint FROM execution_events
         WHERE thread_key = $1 ORDER BY event_id",
    )
    .bind(thread)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_statements_events_follow_the_threads_last_in_their_order(pool: PgPool) {
    events::append(&pool, "t", None, kinds::MESSAGE, &json!({"n": 0}))
        .await
        .unwrap();
    append_many(&pool, "t", 3).await;
    append_many(&pool, "other", 2).await;

    assert_eq!(
        trail(&pool, "t").await,
        vec![(1, Some(0)), (2, Some(1)), (3, Some(2)), (4, Some(3))]
    );
    assert_eq!(
        trail(&pool, "other").await,
        vec![(1, Some(1)), (2, Some(2))]
    );
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn concurrent_writers_of_one_thread_number_without_gaps_or_repeats(pool: PgPool) {
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let pool = pool.clone();
        writers.spawn(async move { append_many(&pool, "busy", 3).await });
    }
    while let Some(written) = writers.join_next().await {
        written.unwrap();
    }

    let trail = trail(&pool, "busy").await;
    let numbers: Vec<i64> = trail.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        numbers,
        (1..=48).collect::<Vec<_>>(),
        "in id order: {trail:?}"
    );
    for statement in trail.chunks(3) {
        let order: Vec<_> = statement.iter().map(|(_, n)| *n).collect();
        assert_eq!(order, vec![Some(1), Some(2), Some(3)], "{trail:?}");
    }
}

#[sqlx::test(migrator = "centaur_store::MIGRATOR")]
async fn a_row_inserted_without_a_number_is_numbered_by_the_trigger(pool: PgPool) {
    append_many(&pool, "t", 2).await;
    sqlx::query(
        "INSERT INTO execution_events (thread_key, event_kind, event_json)
         VALUES ('t', 'message', '{\"n\": 9}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    append_many(&pool, "t", 1).await;

    assert_eq!(
        trail(&pool, "t").await,
        vec![(1, Some(1)), (2, Some(2)), (3, Some(9)), (4, Some(1))]
    );
}
