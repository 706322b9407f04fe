//! Communities, their tags and their members.
//!
//! A community's name is unique whatever its case: `name_key` holds the
//! name lower-cased here, in Rust, so SQLite and Postgres agree on what
//! clashes, and a unique index on it settles races between two creators.

use super::cards::like_pattern;
use super::measured;
use super::{conflict_on_unique, on_pool, Store, StoreError, UserRow};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CommunityRow {
    pub id: i64,
    pub name: String,
    /// The name lower-cased: what uniqueness and ordering compare.
    pub name_key: String,
    pub description: String,
    /// JSON array of strings.
    pub tags: String,
    pub owner_id: i64,
    pub member_count: i64,
    pub created_at: i64,
}

pub struct CommunityFilter<'a> {
    pub tag: Option<&'a str>,
    /// Matched case-insensitively against name and description.
    pub text: Option<&'a str>,
    /// The `(name_key, id)` of the last community already served.
    pub after: Option<(&'a str, i64)>,
    pub limit: u32,
}

/// A member as the member list shows them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub joined_at: i64,
}

/// What a join or a leave did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// The membership changed.
    Changed,
    /// It already was as asked.
    Unchanged,
    NoSuchCommunity,
}

/// What a community room needs to know about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommunityAccess {
    pub name: String,
    pub is_member: bool,
}

/// The form of a name that uniqueness and ordering use.
fn community_name_key(name: &str) -> String {
    name.to_lowercase()
}

const COMMUNITY_SELECT: &str = "SELECT c.id, c.name, c.name_key, c.description, c.tags, \
    c.owner_id, c.created_at, \
    (SELECT COUNT(*) FROM memberships m WHERE m.community_id = c.id) AS member_count \
    FROM communities c";

impl Store {
    /// Creates the community with its owner as first member. A name that
    /// clashes with another, ignoring case, is [`StoreError::Conflict`].
    pub async fn create_community(
        &self,
        owner_id: i64,
        name: &str,
        description: &str,
        tags: &[String],
        now: i64,
    ) -> Result<CommunityRow, StoreError> {
        measured("create_community", async {
            let tags_json = serde_json::to_string(tags).unwrap_or_else(|_| "[]".into());
            let key = community_name_key(name);
            let id: i64 = on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO communities (name, name_key, description, tags, owner_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(name)
                .bind(&key)
                .bind(description)
                .bind(&tags_json)
                .bind(owner_id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(conflict_on_unique("community name is taken"))?;
                for tag in tags {
                    sqlx::query("INSERT INTO community_tags (community_id, tag) VALUES ($1, $2)")
                        .bind(id)
                        .bind(tag)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(
                    "INSERT INTO memberships (community_id, user_id, created_at) VALUES ($1, $2, $3)",
                )
                .bind(id)
                .bind(owner_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                id
            });
            self.community(id)
                .await?
                .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
        })
        .await
    }

    pub async fn community(&self, id: i64) -> Result<Option<CommunityRow>, StoreError> {
        measured("community", async {
            let sql = format!("{COMMUNITY_SELECT} WHERE c.id = $1");
            Ok(
                on_pool!(self, pool => sqlx::query_as::<_, CommunityRow>(&sql)
                .bind(id)
                .fetch_optional(pool)
                .await)?,
            )
        })
        .await
    }

    /// Ordered by name (ignoring case, then by id), after the cursor;
    /// fetches `limit` rows.
    pub async fn communities(
        &self,
        filter: CommunityFilter<'_>,
    ) -> Result<Vec<CommunityRow>, StoreError> {
        measured("communities", async {
            // Every key is at least one character, so ("", 0) sorts before all.
            let (after_key, after_id) = filter.after.unwrap_or(("", 0));
            let sql = format!(
                "{COMMUNITY_SELECT} \
                 WHERE (c.name_key > $1 OR (c.name_key = $1 AND c.id > $2)) \
                 AND (CAST($3 AS TEXT) IS NULL OR EXISTS \
                     (SELECT 1 FROM community_tags t WHERE t.community_id = c.id AND t.tag = $3)) \
                 AND (CAST($4 AS TEXT) IS NULL OR c.name_key LIKE $4 ESCAPE '\\' \
                     OR LOWER(c.description) LIKE $4 ESCAPE '\\') \
                 ORDER BY c.name_key, c.id LIMIT $5"
            );
            let pattern = filter.text.map(like_pattern);
            Ok(
                on_pool!(self, pool => sqlx::query_as::<_, CommunityRow>(&sql)
                .bind(after_key)
                .bind(after_id)
                .bind(filter.tag)
                .bind(pattern.as_deref())
                .bind(i64::from(filter.limit))
                .fetch_all(pool)
                .await)?,
            )
        })
        .await
    }

    pub async fn is_community_member(
        &self,
        community_id: i64,
        user_id: i64,
    ) -> Result<bool, StoreError> {
        measured("is_community_member", async {
            let found: Option<(i64,)> = on_pool!(self, pool => sqlx::query_as(
                "SELECT CAST(1 AS BIGINT) FROM memberships WHERE community_id = $1 AND user_id = $2",
            )
            .bind(community_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await)?;
            Ok(found.is_some())
        })
        .await
    }

    /// Makes the user a member; joining twice changes nothing.
    pub async fn join_community(
        &self,
        community_id: i64,
        user_id: i64,
        now: i64,
    ) -> Result<MembershipChange, StoreError> {
        measured("join_community", async {
            // Inserting through a SELECT of the community keeps an unknown id
            // from reaching the foreign key, whose error differs per backend.
            let added = on_pool!(self, pool => sqlx::query(
                "INSERT INTO memberships (community_id, user_id, created_at) \
                 SELECT id, $2, $3 FROM communities WHERE id = $1 \
                 ON CONFLICT (community_id, user_id) DO NOTHING",
            )
            .bind(community_id)
            .bind(user_id)
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
            self.membership_change(community_id, added).await
        })
        .await
    }

    /// Ends the membership; leaving twice changes nothing.
    pub async fn leave_community(
        &self,
        community_id: i64,
        user_id: i64,
    ) -> Result<MembershipChange, StoreError> {
        measured("leave_community", async {
            let removed = on_pool!(self, pool => sqlx::query(
                "DELETE FROM memberships WHERE community_id = $1 AND user_id = $2",
            )
            .bind(community_id)
            .bind(user_id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
            self.membership_change(community_id, removed).await
        })
        .await
    }

    async fn membership_change(
        &self,
        community_id: i64,
        rows: u64,
    ) -> Result<MembershipChange, StoreError> {
        if rows > 0 {
            return Ok(MembershipChange::Changed);
        }
        let found: Option<(i64,)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT id FROM communities WHERE id = $1",
        )
        .bind(community_id)
        .fetch_optional(pool)
        .await)?;
        Ok(match found {
            Some(_) => MembershipChange::Unchanged,
            None => MembershipChange::NoSuchCommunity,
        })
    }

    /// The community's name and whether the user belongs to it, for
    /// deciding who may enter `community:<id>`; `None` when there is no
    /// such community.
    pub async fn community_room_access(
        &self,
        community_id: i64,
        user_id: i64,
    ) -> Result<Option<CommunityAccess>, StoreError> {
        measured("community_room_access", async {
            let row: Option<(String, i64)> = on_pool!(self, pool => sqlx::query_as(
                "SELECT c.name, \
                 (SELECT COUNT(*) FROM memberships m WHERE m.community_id = c.id AND m.user_id = $2) \
                 FROM communities c WHERE c.id = $1",
            )
            .bind(community_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await)?;
            Ok(row.map(|(name, count)| CommunityAccess {
                name,
                is_member: count > 0,
            }))
        })
        .await
    }

    /// `(id, name)` of every community the user belongs to, by id.
    pub async fn community_ids_of(&self, user_id: i64) -> Result<Vec<(i64, String)>, StoreError> {
        measured("community_ids_of", async {
            Ok(on_pool!(self, pool => sqlx::query_as::<_, (i64, String)>(
                "SELECT c.id, c.name FROM memberships m JOIN communities c ON c.id = m.community_id \
                 WHERE m.user_id = $1 ORDER BY c.id",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await)?)
        })
        .await
    }

    /// A page of the community's members in the order they joined (ties by
    /// user id), after the `(joined_at, user_id)` of the last one served;
    /// fetches `limit` rows. Someone leaving or joining between pages does
    /// not move anyone else: joins land at the end.
    pub async fn community_members(
        &self,
        community_id: i64,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<MemberRow>, StoreError> {
        measured("community_members", async {
            let (after_at, after_user) = after.unwrap_or((i64::MIN, 0));
            Ok(on_pool!(self, pool => sqlx::query_as::<_, MemberRow>(
                "SELECT u.id, u.handle, u.display_name, u.bio, u.tags, u.role, u.created_at, \
                 m.created_at AS joined_at \
                 FROM memberships m JOIN users u ON u.id = m.user_id \
                 WHERE m.community_id = $1 \
                 AND (m.created_at > $2 OR (m.created_at = $2 AND m.user_id > $3)) \
                 ORDER BY m.created_at, m.user_id LIMIT $4",
            )
            .bind(community_id)
            .bind(after_at)
            .bind(after_user)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await)?)
        })
        .await
    }
}
