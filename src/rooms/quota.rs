//! What one user may open: drop-in rooms hosted at once and rooms created
//! per minute. The limits and their refusals are defined here; a node
//! alone counts in memory (`LocalQuota`, for the memory engine), a cluster
//! counts in Redis (the `CREATE` script), so a user spread over nodes
//! meets the same limits.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::error::Error;
use crate::hub::UserId;

/// The window `MESHI_ROOM_CREATE_PER_MIN` counts in.
pub const CREATE_WINDOW: Duration = Duration::from_secs(60);

/// Users past which a check first forgets the ones whose window is empty,
/// so the table holds only recent creators.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Clone, Copy, Debug)]
pub struct RoomQuota {
    /// Open drop-in rooms one user hosts at once; 0 means no limit.
    pub max_hosted: usize,
    /// Rooms one user may create in any minute; 0 means no limit.
    pub create_per_min: u32,
}

impl RoomQuota {
    pub fn unlimited() -> Self {
        RoomQuota {
            max_hosted: 0,
            create_per_min: 0,
        }
    }

    pub fn too_many_hosted(&self) -> Error {
        Error::Conflict(format!(
            "you already host {} open rooms (MESHI_MAX_HOSTED_ROOMS); close one first",
            self.max_hosted
        ))
    }

    pub fn too_many_created(&self, retry_after_ms: u64) -> Error {
        Error::RateLimited {
            limit: format!(
                "room.create is limited to {} per minute (MESHI_ROOM_CREATE_PER_MIN)",
                self.create_per_min
            )
            .into(),
            retry_after_ms: retry_after_ms.max(1),
        }
    }
}

/// What opening a room meets, from either engine's count.
pub enum Creating {
    Created,
    /// The host has `MESHI_MAX_HOSTED_ROOMS` open already.
    HostsTooMany,
    /// The host created `MESHI_ROOM_CREATE_PER_MIN` within the last
    /// minute; the oldest of those leaves the window after `wait_ms`.
    TooSoon {
        wait_ms: u64,
    },
}

/// The memory-kept counts of a node that runs alone.
#[derive(Default)]
pub struct LocalQuota {
    hosted: DashMap<UserId, usize>,
    /// When each user's recent rooms were created, oldest first, at most
    /// `create_per_min` of them.
    created: DashMap<UserId, VecDeque<Instant>>,
}

impl LocalQuota {
    /// Counts a room `user` is about to open, or refuses it. Checking and
    /// counting happen under one entry lock, so two racing creates cannot
    /// both take the last place.
    pub fn claim(&self, quota: &RoomQuota, user: UserId) -> Creating {
        let now = Instant::now();
        if quota.create_per_min > 0 && self.created.len() > PRUNE_ABOVE {
            self.created.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|last| now.duration_since(*last) < CREATE_WINDOW)
            });
        }
        let mut hosted = self.hosted.entry(user).or_insert(0);
        let claimed = self.check_and_count(quota, *hosted, user, now);
        let counted = matches!(claimed, Creating::Created);
        if counted {
            *hosted += 1;
        }
        drop(hosted);
        if !counted {
            self.hosted.remove_if(&user, |_, hosted| *hosted == 0);
        }
        claimed
    }

    fn check_and_count(
        &self,
        quota: &RoomQuota,
        hosted: usize,
        user: UserId,
        now: Instant,
    ) -> Creating {
        if quota.max_hosted > 0 && hosted >= quota.max_hosted {
            return Creating::HostsTooMany;
        }
        if quota.create_per_min > 0 {
            let mut times = self.created.entry(user).or_default();
            while times
                .front()
                .is_some_and(|first| now.duration_since(*first) >= CREATE_WINDOW)
            {
                times.pop_front();
            }
            if times.len() >= quota.create_per_min as usize {
                let oldest = times.front().copied().unwrap_or(now);
                let wait = CREATE_WINDOW.saturating_sub(now.duration_since(oldest));
                return Creating::TooSoon {
                    wait_ms: wait.as_millis() as u64,
                };
            }
            times.push_back(now);
        }
        Creating::Created
    }

    /// A room `user` hosted has closed, or failed to open.
    pub fn release(&self, user: UserId) {
        self.hosted.remove_if_mut(&user, |_, hosted| {
            *hosted = hosted.saturating_sub(1);
            *hosted == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_at_the_limit_gets_a_place_back_when_a_room_closes() {
        let quota = RoomQuota {
            max_hosted: 2,
            create_per_min: 0,
        };
        let local = LocalQuota::default();
        assert!(matches!(local.claim(&quota, 1), Creating::Created));
        assert!(matches!(local.claim(&quota, 1), Creating::Created));
        assert!(matches!(local.claim(&quota, 1), Creating::HostsTooMany));
        assert!(matches!(local.claim(&quota, 2), Creating::Created));
        local.release(1);
        assert!(matches!(local.claim(&quota, 1), Creating::Created));
    }

    #[test]
    fn creates_past_the_rate_wait_for_the_oldest_to_leave_the_window() {
        let quota = RoomQuota {
            max_hosted: 0,
            create_per_min: 3,
        };
        let local = LocalQuota::default();
        for _ in 0..3 {
            assert!(matches!(local.claim(&quota, 1), Creating::Created));
            local.release(1);
        }
        match local.claim(&quota, 1) {
            Creating::TooSoon { wait_ms } => {
                assert!((59_000..=60_000).contains(&wait_ms), "{wait_ms}")
            }
            _ => panic!("expected to wait"),
        }
        assert!(matches!(local.claim(&quota, 2), Creating::Created));
    }
}
