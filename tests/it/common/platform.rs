//! Cards, interest, matches, events and communities set up over REST, each
//! step asserted to succeed. Every helper takes the [`Api`] it goes
//! through, so the steps of one story may land on different nodes.

use serde_json::{json, Value};

use super::json::text_of;
use super::Api;

/// Posts a card that must be created; returns it.
pub async fn new_card(api: &Api, token: &str, title: &str, body: &str, tags: &[&str]) -> Value {
    let (status, card) = api
        .post(
            "/api/v1/cards",
            Some(token),
            json!({"title": title, "body": body, "tags": tags}),
        )
        .await;
    assert_eq!(status, 201, "create card `{title}` answered {card}");
    card
}

/// `token`'s user presses interested on the card.
pub async fn press_interest(api: &Api, card_id: &str, token: &str) {
    let (status, body) = api
        .put(&format!("/api/v1/cards/{card_id}/interest"), token)
        .await;
    assert_eq!(status, 204, "press interested on {card_id}: {body}");
}

/// The card's owner matches `user_id`; returns the match record.
pub async fn create_match(api: &Api, card_id: &str, owner_token: &str, user_id: &str) -> Value {
    let (status, body) = api
        .post(
            &format!("/api/v1/cards/{card_id}/matches"),
            Some(owner_token),
            json!({"user_id": user_id}),
        )
        .await;
    assert_eq!(status, 201, "match on {card_id}: {body}");
    body["match"].clone()
}

/// The owner (REST on `owner_api`) posts a card, the fan (REST on
/// `fan_api`) presses interested, the owner matches; returns the
/// conversation id.
pub async fn match_pair(
    owner_api: &Api,
    owner_token: &str,
    fan_api: &Api,
    fan_token: &str,
    fan_id: &str,
) -> String {
    let card = new_card(owner_api, owner_token, "talk", "let us talk", &[]).await;
    let card_id = text_of(&card["id"]);
    press_interest(fan_api, &card_id, fan_token).await;
    let record = create_match(owner_api, &card_id, owner_token, fan_id).await;
    text_of(&record["conversation_id"])
}

/// Two matched users: tokens, ids and their conversation.
pub struct Pair {
    pub a_token: String,
    pub a_id: String,
    pub b_token: String,
    pub b_id: String,
    pub conversation: String,
}

/// Registers `a` on `api_a` and `b` on `api_b` and matches them through a
/// card of `a`.
pub async fn pair(api_a: &Api, api_b: &Api, a: &str, b: &str) -> Pair {
    let (a_token, a_id) = api_a.register(a).await;
    let (b_token, b_id) = api_b.register(b).await;
    let conversation = match_pair(api_a, &a_token, api_b, &b_token, &b_id).await;
    Pair {
        a_token,
        a_id,
        b_token,
        b_id,
        conversation,
    }
}

/// Creates an event from `body`; returns it.
pub async fn new_event(api: &Api, token: &str, body: Value) -> Value {
    let (status, event) = api.post("/api/v1/events", Some(token), body).await;
    assert_eq!(status, 201, "create event answered {event}");
    event
}

/// RSVPs to the event; returns the RSVP.
pub async fn rsvp(api: &Api, event_id: &str, token: &str) -> Value {
    let (status, body) = api
        .put(&format!("/api/v1/events/{event_id}/rsvp"), token)
        .await;
    assert_eq!(status, 200, "rsvp answered {body}");
    body
}

/// Withdraws the RSVP.
pub async fn leave_event(api: &Api, event_id: &str, token: &str) {
    let (status, body) = api
        .delete(&format!("/api/v1/events/{event_id}/rsvp"), token)
        .await;
    assert_eq!(status, 204, "leave answered {body}");
}

/// Creates a community from `body`; returns it.
pub async fn new_community(api: &Api, token: &str, body: Value) -> Value {
    let (status, community) = api.post("/api/v1/communities", Some(token), body).await;
    assert_eq!(status, 201, "create community answered {community}");
    community
}

/// Joins the community.
pub async fn join_community(api: &Api, community_id: &str, token: &str) {
    let (status, body) = api
        .put(
            &format!("/api/v1/communities/{community_id}/membership"),
            token,
        )
        .await;
    assert_eq!(status, 204, "join community {community_id}: {body}");
}
