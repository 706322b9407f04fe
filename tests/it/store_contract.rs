//! The store's account contract, written once and run against both
//! backends: every contract function below becomes `sqlite::<name>` and
//! `postgres::<name>`. The Postgres half needs the shared server (see
//! `crate::common::postgres`) and fails, saying how to start it, when it is down.

use crate::common::store::{member, user as create, NOW};
use crate::store_contract;
use meshi::store::{NewUser, Store, StoreError};

store_contract!(
    migrate_is_idempotent,
    create_user_returns_the_row,
    duplicate_handle_is_a_conflict,
    user_by_id_finds_and_misses,
    user_with_password_returns_the_hash,
    set_role_changes_the_role,
    live_session_finds_the_user,
    live_session_refuses_expired_sessions,
    live_session_refuses_revoked_sessions,
    revoke_session_is_true_once,
    ping_answers,
);

async fn migrate_is_idempotent(store: &Store) {
    // The harness migrated once already; twice more must change nothing.
    store.migrate().await.expect("second migrate");
    store.migrate().await.expect("third migrate");
    let user = create(store, "after_migrate").await;
    let found = store.user_by_id(user.id).await.expect("user_by_id");
    assert_eq!(found.map(|u| u.handle).as_deref(), Some("after_migrate"));
}

async fn create_user_returns_the_row(store: &Store) {
    let first = store
        .create_user(NewUser {
            handle: "ada",
            display_name: "Ada Lovelace",
            password_hash: Some("hash-ada"),
            external_sub: None,
            role: "member",
            now: NOW,
        })
        .await
        .expect("create ada");
    assert!(first.id > 0, "ids are positive: {first:?}");
    assert_eq!(first.handle, "ada");
    assert_eq!(first.display_name, "Ada Lovelace");
    assert_eq!(first.bio, "", "default bio");
    assert_eq!(first.tags, "[]", "default tags");
    assert_eq!(first.role, "member");
    assert_eq!(first.created_at, NOW);

    let second = store
        .create_user(NewUser {
            handle: "grace",
            display_name: "Grace Hopper",
            password_hash: None,
            external_sub: Some("sso|grace"),
            role: "moderator",
            now: NOW + 5,
        })
        .await
        .expect("create grace");
    assert!(
        second.id > first.id,
        "ids increase: {} then {}",
        first.id,
        second.id
    );
    assert_eq!(second.handle, "grace");
    assert_eq!(second.display_name, "Grace Hopper");
    assert_eq!(second.bio, "");
    assert_eq!(second.tags, "[]");
    assert_eq!(second.role, "moderator");
    assert_eq!(second.created_at, NOW + 5);
}

async fn duplicate_handle_is_a_conflict(store: &Store) {
    let first = create(store, "taken").await;
    let again = store.create_user(member("taken", Some("other-hash"))).await;
    assert!(
        matches!(again, Err(StoreError::Conflict(_))),
        "a second `taken` must be a conflict, got {again:?}"
    );
    // The refused write changed nothing and the store still works.
    let kept = store
        .user_with_password("taken")
        .await
        .expect("lookup")
        .expect("the first user is still there");
    assert_eq!(kept.0.id, first.id);
    assert_eq!(kept.1.as_deref(), Some("$argon2id$stub"));
    let other = create(store, "not_taken").await;
    assert!(other.id > first.id);
}

async fn user_by_id_finds_and_misses(store: &Store) {
    let user = create(store, "findme").await;
    let found = store
        .user_by_id(user.id)
        .await
        .expect("user_by_id")
        .expect("the user exists");
    assert_eq!(found.id, user.id);
    assert_eq!(found.handle, "findme");
    assert_eq!(found.display_name, "findme");
    assert_eq!(found.role, "member");
    assert_eq!(found.created_at, NOW);

    let missing = store.user_by_id(user.id + 1_000).await.expect("user_by_id");
    assert!(missing.is_none(), "no such user, got {missing:?}");
}

async fn user_with_password_returns_the_hash(store: &Store) {
    let user = store
        .create_user(member("withpw", Some("$argon2id$v=19$secret")))
        .await
        .expect("create withpw");
    let (found, hash) = store
        .user_with_password("withpw")
        .await
        .expect("lookup")
        .expect("withpw exists");
    assert_eq!(found.id, user.id);
    assert_eq!(found.handle, "withpw");
    assert_eq!(hash.as_deref(), Some("$argon2id$v=19$secret"));

    store
        .create_user(NewUser {
            handle: "sso_only",
            display_name: "SSO",
            password_hash: None,
            external_sub: Some("idp|42"),
            role: "member",
            now: NOW,
        })
        .await
        .expect("create sso_only");
    let (_, no_hash) = store
        .user_with_password("sso_only")
        .await
        .expect("lookup")
        .expect("sso_only exists");
    assert_eq!(no_hash, None, "an SSO-only user has no password hash");

    let unknown = store.user_with_password("nobody").await.expect("lookup");
    assert!(unknown.is_none(), "unknown handle, got {unknown:?}");
}

async fn set_role_changes_the_role(store: &Store) {
    let user = create(store, "promote").await;
    let bystander = create(store, "bystander").await;
    store
        .set_role(user.id, "moderator")
        .await
        .expect("set moderator");
    let found = store
        .user_by_id(user.id)
        .await
        .expect("lookup")
        .expect("exists");
    assert_eq!(found.role, "moderator");
    store.set_role(user.id, "admin").await.expect("set admin");
    let found = store
        .user_by_id(user.id)
        .await
        .expect("lookup")
        .expect("exists");
    assert_eq!(found.role, "admin");
    let other = store
        .user_by_id(bystander.id)
        .await
        .expect("lookup")
        .expect("exists");
    assert_eq!(other.role, "member", "only the target changes");
}

async fn live_session_finds_the_user(store: &Store) {
    let user = create(store, "sessioned").await;
    let session = store
        .create_session(user.id, "digest-live", NOW, NOW + 60_000)
        .await
        .expect("create session");
    assert_eq!(session.user_id, user.id);
    assert_eq!(session.expires_at, NOW + 60_000);

    let (found, owner) = store
        .live_session("digest-live", NOW + 1)
        .await
        .expect("live_session")
        .expect("the session is live");
    assert_eq!(found.id, session.id);
    assert_eq!(found.user_id, user.id);
    assert_eq!(found.expires_at, NOW + 60_000);
    assert_eq!(owner.id, user.id);
    assert_eq!(owner.handle, "sessioned");
    assert_eq!(owner.role, "member");

    let second = store
        .create_session(user.id, "digest-second", NOW, NOW + 60_000)
        .await
        .expect("a second session");
    assert_ne!(second.id, session.id);

    let unknown = store
        .live_session("digest-unknown", NOW)
        .await
        .expect("live_session");
    assert!(unknown.is_none(), "unknown digest, got {unknown:?}");
}

async fn live_session_refuses_expired_sessions(store: &Store) {
    let user = create(store, "expiring").await;
    let expires_at = NOW + 1_000;
    store
        .create_session(user.id, "digest-expiring", NOW, expires_at)
        .await
        .expect("create session");

    let just_before = store
        .live_session("digest-expiring", expires_at - 1)
        .await
        .expect("live_session");
    assert!(just_before.is_some(), "live until expires_at");
    let at_expiry = store
        .live_session("digest-expiring", expires_at)
        .await
        .expect("live_session");
    assert!(
        at_expiry.is_none(),
        "expired at expires_at, got {at_expiry:?}"
    );
    let after = store
        .live_session("digest-expiring", expires_at + 60_000)
        .await
        .expect("live_session");
    assert!(after.is_none(), "expired afterwards, got {after:?}");
}

async fn live_session_refuses_revoked_sessions(store: &Store) {
    let user = create(store, "revoked").await;
    let doomed = store
        .create_session(user.id, "digest-doomed", NOW, NOW + 60_000)
        .await
        .expect("create session");
    store
        .create_session(user.id, "digest-kept", NOW, NOW + 60_000)
        .await
        .expect("create session");
    assert!(store
        .revoke_session(doomed.id, NOW + 10)
        .await
        .expect("revoke"));

    let gone = store
        .live_session("digest-doomed", NOW + 20)
        .await
        .expect("live_session");
    assert!(gone.is_none(), "a revoked session is dead, got {gone:?}");
    let kept = store
        .live_session("digest-kept", NOW + 20)
        .await
        .expect("live_session");
    assert!(
        kept.is_some(),
        "the user's other session is untouched by the revocation"
    );
}

async fn revoke_session_is_true_once(store: &Store) {
    let user = create(store, "revoker").await;
    let session = store
        .create_session(user.id, "digest-revoke-once", NOW, NOW + 60_000)
        .await
        .expect("create session");
    assert!(
        store
            .revoke_session(session.id, NOW + 1)
            .await
            .expect("first revoke"),
        "the first revocation ends a live session"
    );
    assert!(
        !store
            .revoke_session(session.id, NOW + 2)
            .await
            .expect("second revoke"),
        "a second revocation finds nothing live"
    );
    assert!(
        !store
            .revoke_session(session.id + 1_000, NOW + 3)
            .await
            .expect("revoke unknown"),
        "an unknown session is not revoked"
    );
}

async fn ping_answers(store: &Store) {
    store.ping().await.expect("ping");
    store.ping().await.expect("ping again");
}
