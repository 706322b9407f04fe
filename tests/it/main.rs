//! The integration tests: each module an area of the server, run against
//! real servers on ephemeral ports, real SQLite, Postgres and Redis. One
//! test crate, so the suite links once and shares its support code.

mod common;

mod account_management;
mod accounts;
mod admin;
mod auth_limits;
mod bad_input;
mod blocking;
mod bus_redis;
mod cards;
mod cluster;
mod cluster_platform;
mod communities;
mod config_check;
mod conversation_order;
mod dm;
mod dm_smoke;
mod event_store;
mod events;
mod http_deadlines;
mod input_hygiene;
mod limits;
mod log_secrets;
mod matching;
mod notifications;
mod observability;
mod openapi;
mod organisers;
mod postgres_server;
mod production;
mod prometheus;
mod reports;
mod revisions;
mod revocation;
mod room_access;
mod room_moderation;
mod room_quota;
mod rooms;
mod rooms_directory;
mod safety_story;
mod script_frames;
mod session;
mod smoke;
mod socket_caps;
mod sso;
mod standing_rooms;
mod store_communities;
mod store_contract;
mod store_messages;
mod store_platform;
mod suspension;
mod tls;
mod web_client;
