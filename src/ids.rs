//! Random identifiers for things that live outside the database (rooms,
//! room messages). Eighteen base-62 characters carry about 107 bits, so
//! collisions are not a practical concern.

use rand::distributions::Alphanumeric;
use rand::Rng;

pub fn random(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 18);
    id.push_str(prefix);
    id.extend(
        rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(18)
            .map(char::from),
    );
    id
}
