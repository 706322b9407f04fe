//! GET /conversations in activity order against the real server, on SQLite
//! and on Postgres (whose messages take the one-statement batch path):
//! the latest message, else the match, comes first; messages sent over
//! real sockets reorder the list; pages neither skip nor repeat while
//! messages arrive between them; closed conversations stay out.
//!
//! The Postgres variants need the shared server (see
//! `crate::common::postgres`) and fail, saying how to start it, when it is
//! down.

use serde_json::{json, Value};

use crate::common::json::{assert_bad_field, parse_time, text_of};
use crate::common::platform::{create_match, new_card, press_interest};
use crate::common::{TestServer, WsClient};

/// One partner of the hub user: their token and the shared conversation.
struct Partner {
    token: String,
    id: String,
    card_id: String,
    conversation: String,
    match_id: String,
}

/// Registers `hub` and `count` partners, matched with the hub one after
/// another (the first matched is the oldest activity).
async fn hub_with_partners(server: &TestServer, hub: &str, count: usize) -> (String, Vec<Partner>) {
    let (hub_token, _) = server.register(hub).await;
    let mut partners = Vec::new();
    for n in 0..count {
        let (token, id) = server.register(&format!("{hub}_p{n}")).await;
        let card = new_card(server, &hub_token, &format!("topic {n}"), "", &[]).await;
        let card_id = text_of(&card["id"]);
        press_interest(server, &card_id, &token).await;
        let record = create_match(server, &card_id, &hub_token, &id).await;
        partners.push(Partner {
            token,
            id,
            card_id,
            conversation: text_of(&record["conversation_id"]),
            match_id: text_of(&record["id"]),
        });
    }
    (hub_token, partners)
}

/// `token`'s user sends `text` to the conversation; acknowledged.
async fn send(server: &TestServer, token: &str, conversation: &str, text: &str) {
    let mut client = WsClient::hello(server, token).await;
    client
        .ok(json!({"type": "dm.send", "conversation_id": conversation, "text": text}))
        .await;
}

fn conversation_ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|c| text_of(&c["id"])).collect()
}

/// The conversations of `partners` at these indexes, in that order.
fn of(partners: &[Partner], indexes: &[usize]) -> Vec<String> {
    indexes
        .iter()
        .map(|&n| partners[n].conversation.clone())
        .collect()
}

/// The whole first page (up to 100), in order.
async fn listed(server: &TestServer, token: &str) -> Vec<Value> {
    let (items, _) = server.page("/api/v1/conversations?limit=100", token).await;
    items
}

async fn order_follows_messages(server: &TestServer) {
    let (hub, p) = hub_with_partners(server, "ord_hub", 3).await;
    let items = listed(server, &hub).await;
    assert_eq!(
        conversation_ids(&items),
        of(&p, &[2, 1, 0]),
        "no messages yet: latest match first"
    );
    for item in &items {
        assert_eq!(item["last_message"], Value::Null, "{item}");
        parse_time(&item["last_activity_at"]);
    }

    // A partner writing brings their conversation up, for both sides.
    send(
        server,
        &p[0].token,
        &p[0].conversation,
        "hello from the first",
    )
    .await;
    assert_eq!(
        conversation_ids(&listed(server, &hub).await),
        of(&p, &[0, 2, 1])
    );
    // The hub writing does too.
    send(server, &hub, &p[1].conversation, "hub to the second").await;
    let items = listed(server, &hub).await;
    assert_eq!(conversation_ids(&items), of(&p, &[1, 0, 2]));
    assert_eq!(items[0]["last_message"]["text"], "hub to the second");
    assert_eq!(items[1]["last_message"]["text"], "hello from the first");
    assert_eq!(items[1]["unread_count"], 1);
    let times: Vec<_> = items
        .iter()
        .map(|c| parse_time(&c["last_activity_at"]))
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{items:?}");
    assert_eq!(
        parse_time(&items[0]["last_activity_at"]),
        parse_time(&items[0]["last_message"]["sent_at"]),
        "activity is the latest message"
    );

    // The partner's own list has the one conversation.
    let theirs = listed(server, &p[0].token).await;
    assert_eq!(conversation_ids(&theirs), of(&p, &[0]));

    // An unmatched conversation leaves the list; matching again brings it
    // back at the top, with its history.
    let (status, body) = server
        .delete(&format!("/api/v1/matches/{}", p[1].match_id), &hub)
        .await;
    assert_eq!(status, 204, "unmatch: {body}");
    assert_eq!(
        conversation_ids(&listed(server, &hub).await),
        of(&p, &[0, 2])
    );
    send(server, &p[2].token, &p[2].conversation, "third speaks").await;
    assert_eq!(
        conversation_ids(&listed(server, &hub).await),
        of(&p, &[2, 0])
    );
    let (status, body) = server
        .post(
            &format!("/api/v1/cards/{}/matches", p[1].card_id),
            Some(&hub),
            json!({"user_id": p[1].id}),
        )
        .await;
    assert_eq!(status, 200, "match again: {body}");
    let items = listed(server, &hub).await;
    assert_eq!(conversation_ids(&items), of(&p, &[1, 2, 0]));
    assert_eq!(items[0]["last_message"]["text"], "hub to the second");
}

/// A message lands between page 1 and page 2 in a conversation page 1
/// showed: it moves to the top, page 2 does not show it again, and the
/// pages still cover every other conversation exactly once.
async fn a_message_between_pages_neither_skips_nor_repeats(server: &TestServer) {
    let (hub, p) = hub_with_partners(server, "page_hub", 5).await;
    let path = "/api/v1/conversations?limit=2";
    let (first, cursor) = server.page(path, &hub).await;
    assert_eq!(conversation_ids(&first), of(&p, &[4, 3]));

    send(server, &p[3].token, &p[3].conversation, "back on top").await;

    let (second, cursor) = server
        .page(&format!("{path}&cursor={}", cursor.expect("page 2")), &hub)
        .await;
    assert_eq!(conversation_ids(&second), of(&p, &[2, 1]));
    let (third, end) = server
        .page(&format!("{path}&cursor={}", cursor.expect("page 3")), &hub)
        .await;
    assert_eq!(conversation_ids(&third), of(&p, &[0]));
    assert_eq!(end, None);

    let mut seen: Vec<String> = [first, second, third]
        .iter()
        .flat_map(|page| conversation_ids(page))
        .collect();
    seen.sort();
    let mut all = of(&p, &[0, 1, 2, 3, 4]);
    all.sort();
    assert_eq!(seen, all, "every conversation exactly once");

    // A fresh first page shows the new order.
    let (fresh, _) = server.page(path, &hub).await;
    assert_eq!(conversation_ids(&fresh), of(&p, &[3, 4]));
}

/// A message lands between pages in a conversation not reached yet: it
/// moves above the cursor, so this pass does not show it further down
/// (where it no longer is) and never shows anything twice; those that
/// stayed put are all served, and the moved one leads a fresh first page.
async fn a_conversation_moving_up_mid_pass_is_never_served_twice(server: &TestServer) {
    let (hub, p) = hub_with_partners(server, "jump_hub", 5).await;
    let path = "/api/v1/conversations?limit=2";
    let (first, cursor) = server.page(path, &hub).await;
    assert_eq!(conversation_ids(&first), of(&p, &[4, 3]));

    send(server, &hub, &p[1].conversation, "jumping the queue").await;

    let (second, cursor) = server
        .page(&format!("{path}&cursor={}", cursor.expect("page 2")), &hub)
        .await;
    assert_eq!(conversation_ids(&second), of(&p, &[2, 0]), "none skipped");
    assert_eq!(cursor, None);

    let (fresh, _) = server.page(path, &hub).await;
    assert_eq!(conversation_ids(&fresh), of(&p, &[1, 4]));
}

async fn conversation_queries_are_checked(server: &TestServer) {
    let (hub, _) = hub_with_partners(server, "chk_hub", 1).await;
    for query in ["?limit=0", "?limit=101"] {
        let (status, body) = server
            .get(&format!("/api/v1/conversations{query}"), Some(&hub))
            .await;
        assert_bad_field(status, &body, "limit");
    }
    let (status, body) = server
        .get("/api/v1/conversations?cursor=bm9wZQ", Some(&hub))
        .await;
    assert_bad_field(status, &body, "cursor");
}

#[tokio::test]
async fn order_follows_messages_on_sqlite() {
    order_follows_messages(&TestServer::start().await).await;
}

#[tokio::test]
async fn order_follows_messages_on_postgres() {
    order_follows_messages(&TestServer::start_on_postgres(|_| {}).await).await;
}

#[tokio::test]
async fn a_message_between_pages_neither_skips_nor_repeats_on_sqlite() {
    a_message_between_pages_neither_skips_nor_repeats(&TestServer::start().await).await;
}

#[tokio::test]
async fn a_message_between_pages_neither_skips_nor_repeats_on_postgres() {
    a_message_between_pages_neither_skips_nor_repeats(&TestServer::start_on_postgres(|_| {}).await)
        .await;
}

#[tokio::test]
async fn a_conversation_moving_up_mid_pass_is_never_served_twice_on_sqlite() {
    a_conversation_moving_up_mid_pass_is_never_served_twice(&TestServer::start().await).await;
}

#[tokio::test]
async fn a_conversation_moving_up_mid_pass_is_never_served_twice_on_postgres() {
    a_conversation_moving_up_mid_pass_is_never_served_twice(
        &TestServer::start_on_postgres(|_| {}).await,
    )
    .await;
}

#[tokio::test]
async fn conversation_queries_are_checked_on_sqlite() {
    conversation_queries_are_checked(&TestServer::start().await).await;
}

#[tokio::test]
async fn conversation_queries_are_checked_on_postgres() {
    conversation_queries_are_checked(&TestServer::start_on_postgres(|_| {}).await).await;
}
