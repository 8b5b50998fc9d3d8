//! `sandbox_sessions` keeps a harness session id per sandbox: a thread's new sandbox never
//! inherits (or resumes) the session id of the sandbox it replaces, and a late record from
//! the old sandbox's turn never lands on the new sandbox's row.
#![allow(clippy::unwrap_used)]

use centaur_store::sessions;
use centaur_tests::TestDatabase;

const THREAD: &str = "sessions-thread";

async fn live_agent_thread(pool: &sqlx::PgPool) -> Option<String> {
    sessions::live(pool, THREAD)
        .await
        .unwrap()
        .and_then(|session| session.agent_thread_id)
}

#[tokio::test]
async fn a_new_sandboxs_session_never_inherits_the_old_sandboxs_harness_session_id() {
    let database = TestDatabase::create().await.unwrap();
    let pool = centaur_store::connect(&database.url, 4).await.unwrap();

    sessions::set_live(&pool, THREAD, "sbx-a", "codex")
        .await
        .unwrap();
    sessions::record_turn(&pool, THREAD, "sbx-a", Some("codex-thread-a"))
        .await
        .unwrap();
    assert_eq!(
        sessions::resumable_agent_thread(&pool, THREAD, "sbx-a")
            .await
            .unwrap()
            .as_deref(),
        Some("codex-thread-a"),
        "the sandbox that ran the turn resumes its own session"
    );

    // The sandbox is replaced (lost, reaped, harness switched, start retried, warm claimed).
    sessions::end(&pool, THREAD, "sbx-a", "lost").await.unwrap();
    sessions::set_live(&pool, THREAD, "sbx-b", "codex")
        .await
        .unwrap();
    assert_eq!(
        live_agent_thread(&pool).await,
        None,
        "the new row starts empty"
    );
    assert_eq!(
        sessions::resumable_agent_thread(&pool, THREAD, "sbx-b")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        sessions::resumable_agent_thread(&pool, THREAD, "sbx-a")
            .await
            .unwrap(),
        None,
        "the old sandbox is not the thread's session any more"
    );

    // A late record from a turn that ran in the old sandbox does not land on the new row.
    sessions::record_turn(&pool, THREAD, "sbx-a", Some("codex-thread-a-late"))
        .await
        .unwrap();
    assert_eq!(live_agent_thread(&pool).await, None);

    // The new sandbox records and keeps its own; adopting it again (a retried create) keeps it.
    sessions::record_turn(&pool, THREAD, "sbx-b", Some("codex-thread-b"))
        .await
        .unwrap();
    sessions::set_live(&pool, THREAD, "sbx-b", "codex")
        .await
        .unwrap();
    assert_eq!(
        live_agent_thread(&pool).await.as_deref(),
        Some("codex-thread-b")
    );

    // A live session replaced without being ended first still starts empty.
    sessions::set_live(&pool, THREAD, "sbx-c", "claude-code")
        .await
        .unwrap();
    assert_eq!(live_agent_thread(&pool).await, None);

    // A sandbox that failed to start ends as `failed` and is no one's session.
    sessions::end(&pool, THREAD, "sbx-c", "failed")
        .await
        .unwrap();
    assert_eq!(sessions::live(&pool, THREAD).await.unwrap(), None);
    assert_eq!(
        sessions::resumable_agent_thread(&pool, THREAD, "sbx-c")
            .await
            .unwrap(),
        None
    );

    pool.close().await;
    database.drop_database().await.unwrap();
}
