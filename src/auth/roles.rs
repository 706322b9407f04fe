//! Roles as groups of permissions, and the one check every privileged
//! handler goes through. No handler looks at a role itself: it asks
//! [`require`] for a [`Permission`], so widening or narrowing a role is an
//! edit to [`Role::permissions`] and nowhere else.

use std::fmt;
use std::str::FromStr;

use meshi_protocol::{Room as RoomView, RoomKind};

use super::Identity;
use crate::error::{Error, Result};

/// What a user is allowed to do beyond their own data. Ordered by
/// privilege: each role holds every permission of the roles below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Member,
    Moderator,
    Admin,
}

/// One privileged action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    CloseRoom,
    RemoveMessage,
    KickUser,
    ChangeRole,
    ReadAudit,
    /// Read the report queue and resolve reports.
    ReviewReports,
    /// Suspend members and lift their suspensions.
    SuspendUser,
    /// Suspend moderators too (never admins, never oneself).
    SuspendStaff,
    /// List every account with its role and suspension.
    ListUsers,
}

impl Permission {
    /// Words for the `forbidden` message, so a client learns what it lacks.
    fn refusal(self) -> &'static str {
        match self {
            Permission::CloseRoom => "your role may not close rooms",
            Permission::RemoveMessage => "your role may not remove messages",
            Permission::KickUser => "your role may not kick users",
            Permission::ChangeRole => "your role may not change roles",
            Permission::ReadAudit => "your role may not read the audit log",
            Permission::ReviewReports => "your role may not review reports",
            Permission::SuspendUser => "your role may not suspend users",
            Permission::SuspendStaff => "only an admin may suspend a moderator",
            Permission::ListUsers => "your role may not list users",
        }
    }
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Member, Role::Moderator, Role::Admin];

    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Member => &[],
            Role::Moderator => &[
                CloseRoom,
                RemoveMessage,
                KickUser,
                ReviewReports,
                SuspendUser,
                ListUsers,
            ],
            Role::Admin => &[
                CloseRoom,
                RemoveMessage,
                KickUser,
                ReviewReports,
                SuspendUser,
                ListUsers,
                ChangeRole,
                ReadAudit,
                SuspendStaff,
            ],
        }
    }

    pub fn permits(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }

    /// The name stored in `users.role` and shown on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }

    /// The role behind a stored name. A name this build does not know
    /// grants nothing, so a bad row can never widen anyone's rights.
    pub fn from_stored(name: &str) -> Role {
        name.parse().unwrap_or(Role::Member)
    }
}

/// A role name that is not `member`, `moderator` or `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == name)
            .ok_or_else(|| UnknownRole(name.to_owned()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who acts on a room: its host, or staff through their role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomActor {
    Host,
    Staff,
}

impl RoomActor {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomActor::Host => "host",
            RoomActor::Staff => "staff",
        }
    }
}

/// Passes for the host of a drop-in room (`hosts`), or a caller whose
/// role holds `permission`; a host who is staff too acts as the host.
pub fn require_in_room(
    identity: &Identity,
    permission: Permission,
    hosts: bool,
) -> Result<RoomActor> {
    if hosts {
        Ok(RoomActor::Host)
    } else if identity.role().permits(permission) {
        Ok(RoomActor::Staff)
    } else {
        Err(NOT_HOST_OR_STAFF)
    }
}

/// Passes for a kick of a user whose role is `target` out of a room:
/// staff may kick anyone, a drop-in room's host anyone but staff.
pub fn require_kick(identity: &Identity, hosts: bool, target: Role) -> Result<RoomActor> {
    if identity.role().permits(Permission::KickUser) {
        Ok(RoomActor::Staff)
    } else if !hosts {
        Err(NOT_HOST_OR_STAFF)
    } else if target.permits(Permission::KickUser) {
        Err(Error::Forbidden(
            "a host cannot kick a moderator or an admin",
        ))
    } else {
        Ok(RoomActor::Host)
    }
}

/// Passes for a suspension (or its lifting) of user `target_id`, whose
/// role is `target`: staff suspend members, only admins suspend
/// moderators, and no one suspends an admin or themselves, so staff can
/// never lock each other out wholesale.
pub fn require_suspend(identity: &Identity, target_id: i64, target: Role) -> Result<()> {
    require(identity, Permission::SuspendUser)?;
    if target_id == identity.user.id {
        return Err(Error::Forbidden("you cannot suspend yourself"));
    }
    match target {
        Role::Admin => Err(Error::Forbidden("an admin cannot be suspended")),
        Role::Moderator => require(identity, Permission::SuspendStaff),
        Role::Member => Ok(()),
    }
}

/// Whether the caller hosts this room: only drop-in rooms have hosts with
/// powers; an event's host runs it through the event itself.
pub fn hosts(identity: &Identity, room: &RoomView) -> bool {
    room.kind == RoomKind::DropIn && room.host_id == Some(identity.user.id.to_string())
}

/// Who changes a message after it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageActor {
    Author,
    Host,
    Staff,
}

impl MessageActor {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageActor::Author => "author",
            MessageActor::Host => "host",
            MessageActor::Staff => "staff",
        }
    }
}

/// Passes for the author of a message (`author_id`, as the wire shows
/// it): nobody edits someone else's message, nor deletes someone else's
/// direct message.
pub fn require_author(identity: &Identity, author_id: &str) -> Result<()> {
    if author_id == identity.user.id.to_string() {
        Ok(())
    } else {
        Err(Error::Forbidden("only its author may change this message"))
    }
}

/// Passes for a delete of a room message: by its author, the host of a
/// drop-in room (`hosts`), or staff; an author deletes as the author.
pub fn require_room_delete(
    identity: &Identity,
    hosts: bool,
    author_id: &str,
) -> Result<MessageActor> {
    if require_author(identity, author_id).is_ok() {
        return Ok(MessageActor::Author);
    }
    match require_in_room(identity, Permission::RemoveMessage, hosts) {
        Ok(RoomActor::Host) => Ok(MessageActor::Host),
        Ok(RoomActor::Staff) => Ok(MessageActor::Staff),
        Err(_) => Err(Error::Forbidden(
            "only its author, the room's host or a moderator may delete this message",
        )),
    }
}

const NOT_HOST_OR_STAFF: Error =
    Error::Forbidden("only the room's host or a moderator may do this");

/// Passes when the caller's role holds `permission`, else `forbidden`.
pub fn require(identity: &Identity, permission: Permission) -> Result<()> {
    if identity.role().permits(permission) {
        Ok(())
    } else {
        Err(Error::Forbidden(permission.refusal()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY_PERMISSION: [Permission; 9] = [
        Permission::CloseRoom,
        Permission::RemoveMessage,
        Permission::KickUser,
        Permission::ChangeRole,
        Permission::ReadAudit,
        Permission::ReviewReports,
        Permission::SuspendUser,
        Permission::SuspendStaff,
        Permission::ListUsers,
    ];

    fn identity(role: Role) -> Identity {
        Identity {
            user: crate::store::UserRow {
                id: 1,
                handle: "someone".into(),
                display_name: "Someone".into(),
                bio: String::new(),
                tags: "[]".into(),
                role: role.as_str().into(),
                created_at: 0,
            },
            credential: super::super::Credential::Session(1),
            expires_at: i64::MAX,
        }
    }

    #[test]
    fn a_host_kicks_members_but_not_staff_and_staff_kick_anyone() {
        let member = identity(Role::Member);
        assert_eq!(
            require_kick(&member, true, Role::Member).ok(),
            Some(RoomActor::Host)
        );
        for staff in [Role::Moderator, Role::Admin] {
            assert!(require_kick(&member, true, staff).is_err(), "{staff}");
        }
        assert!(require_kick(&member, false, Role::Member).is_err());
        let moderator = identity(Role::Moderator);
        for target in Role::ALL {
            assert_eq!(
                require_kick(&moderator, false, target).ok(),
                Some(RoomActor::Staff)
            );
            assert_eq!(
                require_kick(&moderator, true, target).ok(),
                Some(RoomActor::Staff)
            );
        }
    }

    #[test]
    fn authors_edit_only_their_own_and_hosts_and_staff_delete_any() {
        let member = identity(Role::Member);
        assert!(require_author(&member, "1").is_ok());
        assert!(require_author(&member, "2").is_err());
        assert!(require_author(&identity(Role::Admin), "2").is_err());
        assert_eq!(
            require_room_delete(&member, false, "1").ok(),
            Some(MessageActor::Author)
        );
        assert!(require_room_delete(&member, false, "2").is_err());
        assert_eq!(
            require_room_delete(&member, true, "2").ok(),
            Some(MessageActor::Host)
        );
        for staff in [Role::Moderator, Role::Admin] {
            assert_eq!(
                require_room_delete(&identity(staff), false, "2").ok(),
                Some(MessageActor::Staff)
            );
        }
    }

    #[test]
    fn a_host_closes_as_the_host_even_when_staff() {
        let moderator = identity(Role::Moderator);
        let close = Permission::CloseRoom;
        assert_eq!(
            require_in_room(&moderator, close, true).ok(),
            Some(RoomActor::Host)
        );
        assert_eq!(
            require_in_room(&moderator, close, false).ok(),
            Some(RoomActor::Staff)
        );
        assert!(require_in_room(&identity(Role::Member), close, false).is_err());
    }

    #[test]
    fn members_hold_no_permission() {
        for permission in EVERY_PERMISSION {
            assert!(!Role::Member.permits(permission), "{permission:?}");
        }
    }

    #[test]
    fn moderators_moderate_but_do_not_administer() {
        assert!(Role::Moderator.permits(Permission::CloseRoom));
        assert!(Role::Moderator.permits(Permission::RemoveMessage));
        assert!(Role::Moderator.permits(Permission::KickUser));
        assert!(Role::Moderator.permits(Permission::ReviewReports));
        assert!(Role::Moderator.permits(Permission::SuspendUser));
        assert!(Role::Moderator.permits(Permission::ListUsers));
        assert!(!Role::Moderator.permits(Permission::ChangeRole));
        assert!(!Role::Moderator.permits(Permission::ReadAudit));
        assert!(!Role::Moderator.permits(Permission::SuspendStaff));
    }

    #[test]
    fn staff_suspend_members_admins_suspend_moderators_and_nobody_admins_or_themselves() {
        const OTHER: i64 = 2;
        let member = identity(Role::Member);
        for target in Role::ALL {
            assert!(require_suspend(&member, OTHER, target).is_err(), "{target}");
        }
        let moderator = identity(Role::Moderator);
        assert!(require_suspend(&moderator, OTHER, Role::Member).is_ok());
        assert!(require_suspend(&moderator, OTHER, Role::Moderator).is_err());
        assert!(require_suspend(&moderator, OTHER, Role::Admin).is_err());
        let admin = identity(Role::Admin);
        assert!(require_suspend(&admin, OTHER, Role::Member).is_ok());
        assert!(require_suspend(&admin, OTHER, Role::Moderator).is_ok());
        assert!(require_suspend(&admin, OTHER, Role::Admin).is_err());
        for (me, role) in [(&moderator, Role::Moderator), (&admin, Role::Admin)] {
            let myself = me.user.id;
            assert!(
                require_suspend(me, myself, role).is_err(),
                "{role} on themselves"
            );
        }
    }

    #[test]
    fn admins_hold_every_permission() {
        for permission in EVERY_PERMISSION {
            assert!(Role::Admin.permits(permission), "{permission:?}");
        }
    }

    #[test]
    fn each_role_includes_the_roles_below_it() {
        for (lower, higher) in [
            (Role::Member, Role::Moderator),
            (Role::Moderator, Role::Admin),
        ] {
            assert!(lower < higher);
            for permission in lower.permissions() {
                assert!(higher.permits(*permission), "{higher} lacks {permission:?}");
            }
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_grant_nothing() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert_eq!(
            "root".parse::<Role>(),
            Err(UnknownRole("root".into())),
            "only the three names parse"
        );
        assert_eq!("Admin".parse::<Role>().ok(), None, "names are exact");
        assert_eq!(Role::from_stored("superuser"), Role::Member);
    }
}
