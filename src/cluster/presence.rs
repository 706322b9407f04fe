//! Who is online anywhere in the cluster: a hash per user naming the
//! nodes that hold a socket of theirs. A node reports only its own
//! transitions (first socket here, last socket gone after the grace), and
//! the scripts say whether that made the user online or offline for the
//! whole cluster, which is when partners are told.

use super::{scripts, Cluster};
use crate::hub::UserId;

#[derive(Clone)]
pub struct ClusterPresence {
    cluster: Cluster,
}

impl ClusterPresence {
    pub fn new(cluster: Cluster) -> Self {
        ClusterPresence { cluster }
    }

    /// Whether this node's links to Redis are up; while they are not,
    /// presence reaches only this node's sockets.
    pub fn is_connected(&self) -> bool {
        self.cluster.bus().is_connected()
    }

    /// This node now holds the user; true if no node did before.
    pub async fn arrived(&self, user: UserId) -> redis::RedisResult<bool> {
        let first: i64 = self.cluster.run(&scripts::ONLINE, &args![user]).await?;
        Ok(first == 1)
    }

    /// This node no longer holds the user; true if none does now.
    pub async fn departed(&self, user: UserId) -> redis::RedisResult<bool> {
        let last: i64 = self.cluster.run(&scripts::OFFLINE, &args![user]).await?;
        Ok(last == 1)
    }

    /// Which of `users` some node holds right now, in order.
    pub async fn online(&self, users: &[UserId]) -> redis::RedisResult<Vec<bool>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for user in users {
            pipe.exists(self.cluster.key(&format!("on:{user}")));
        }
        self.cluster.pipe(&pipe).await
    }

    /// Takes a dead node's users off it; returns those now offline
    /// everywhere.
    pub async fn reap(&self, dead: &str) -> redis::RedisResult<Vec<UserId>> {
        let key = self.cluster.key(&format!("node:{dead}:users"));
        let users: Vec<UserId> = self.cluster.query(redis::cmd("SMEMBERS").arg(&key)).await?;
        let mut offline = Vec::new();
        for user in users {
            let mut pipe = redis::pipe();
            let on = self.cluster.key(&format!("on:{user}"));
            pipe.hdel(&on, dead).ignore().exists(&on);
            let (still_on,): (bool,) = self.cluster.pipe(&pipe).await?;
            if !still_on {
                offline.push(user);
            }
        }
        self.cluster
            .query::<()>(redis::cmd("DEL").arg(&key))
            .await?;
        Ok(offline)
    }

    /// Brings Redis in line with the users this node holds, in case a
    /// report was lost while Redis was away. Returns the users Redis had
    /// here wrongly who are now offline everywhere.
    pub async fn reconcile(
        &self,
        here: impl Fn() -> Vec<UserId>,
    ) -> redis::RedisResult<Vec<UserId>> {
        let key = self
            .cluster
            .key(&format!("node:{}:users", self.cluster.node()));
        // Redis first, then this node: a user who connects in between is
        // seen here and left alone.
        let listed: Vec<UserId> = self.cluster.query(redis::cmd("SMEMBERS").arg(&key)).await?;
        let here: std::collections::HashSet<UserId> = here().into_iter().collect();
        let mut offline = Vec::new();
        for user in listed.iter().filter(|user| !here.contains(user)) {
            if self.departed(*user).await? {
                offline.push(*user);
            }
        }
        let listed: std::collections::HashSet<UserId> = listed.into_iter().collect();
        let missing: Vec<UserId> = here.into_iter().filter(|u| !listed.contains(u)).collect();
        self.restore(&missing).await?;
        Ok(offline)
    }

    /// Marks every user this node holds as online here again, after Redis
    /// forgot them.
    pub async fn restore(&self, users: &[UserId]) -> redis::RedisResult<()> {
        for chunk in users.chunks(256) {
            let mut pipe = redis::pipe();
            for user in chunk {
                pipe.hset(
                    self.cluster.key(&format!("on:{user}")),
                    self.cluster.node(),
                    1,
                )
                .ignore()
                .sadd(
                    self.cluster
                        .key(&format!("node:{}:users", self.cluster.node())),
                    user,
                )
                .ignore();
            }
            self.cluster.pipe::<()>(&pipe).await?;
        }
        Ok(())
    }
}
