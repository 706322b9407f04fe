//! In-process bus: publishing is delivering.

use std::sync::Arc;

use super::Bus;
use crate::hub::subscribers::{Delivery, Subscribers};

pub struct LocalBus {
    subscribers: Arc<Subscribers>,
}

impl LocalBus {
    pub fn new(subscribers: Arc<Subscribers>) -> Self {
        LocalBus { subscribers }
    }
}

impl Bus for LocalBus {
    fn publish(&self, delivery: Delivery) {
        self.subscribers.deliver(&delivery);
    }
}
