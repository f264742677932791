//! Role routing: what a checkout asks for, and which members may answer it
//! (invariant 7: a member whose last known role does not match is never
//! handed out).

use std::fmt;

use crate::Role;

/// The role a checkout asks for ([`Endpoints::get`](super::Endpoints::get)).
///
/// A member is handed out only if its last known role
/// ([`Manager::role`](crate::Manager::role)) is accepted; a member with no
/// known role (a manager that does not track roles) is accepted by every
/// want, as a single-role deployment expects.
///
/// ```
/// use livepool::Role;
/// use livepool::endpoints::Want;
///
/// assert!(Want::Primary.accepts(Some(Role::Primary)));
/// assert!(!Want::Primary.accepts(Some(Role::Replica)));
/// assert!(Want::PreferReplica.accepts(Some(Role::Primary))); // when no replica is up
/// assert!(Want::Any.accepts(Some(Role::ReadOnly)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Want {
    /// Writes: only a primary.
    Primary,
    /// Reads: a replica (or read-only server) if one is up, else the primary.
    PreferReplica,
    /// Whatever is up.
    Any,
}

impl Want {
    /// Whether a member whose server last reported `role` may serve this want.
    pub fn accepts(self, role: Option<Role>) -> bool {
        match self {
            Want::Primary => matches!(role, None | Some(Role::Primary)),
            Want::PreferReplica | Want::Any => true,
        }
    }

    /// Whether an endpoint last seen with `role` is among the first choices
    /// for this want (an endpoint not seen yet is, for every want but
    /// `PreferReplica`, whose first choices are the known replicas).
    pub(crate) fn prefers(self, role: Option<Role>) -> bool {
        match self {
            Want::Primary => self.accepts(role),
            Want::PreferReplica => matches!(role, Some(Role::Replica | Role::ReadOnly)),
            Want::Any => true,
        }
    }

    /// A stable snake_case name, for log fields.
    pub fn as_str(self) -> &'static str {
        match self {
            Want::Primary => "primary",
            Want::PreferReplica => "prefer_replica",
            Want::Any => "any",
        }
    }
}

impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
