//! In-process bus: publishing is delivering.

use std::sync::Arc;
use std::time::Duration;

use super::Bus;
use crate::hub::subscribers::{Delivery, Subscribers, Topic};

pub struct LocalBus {
    subscribers: Arc<Subscribers>,
}

impl LocalBus {
    pub fn new(subscribers: Arc<Subscribers>) -> Self {
        LocalBus { subscribers }
    }
}

#[async_trait::async_trait]
impl Bus for LocalBus {
    fn publish(&self, delivery: Delivery) {
        self.subscribers.deliver(&delivery);
    }

    /// Every delivery here is published here: a subscriber hears it at once.
    async fn listening(&self, _topic: &Topic, _within: Duration) -> bool {
        true
    }
}
