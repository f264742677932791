//! Which part a PostgreSQL server plays, read in one round trip: the idea of
//! libpq's `target_session_attrs`, checked again with every heartbeat so a
//! failover or a demotion to read-only is noticed on pooled sessions too.

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::Role;

/// One simple query (no statement to prepare, one round trip), answered
/// like the heartbeat's empty query by the backend process itself.
pub(crate) const ROLE_QUERY: &str =
    "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')";

/// Why the role could not be read.
pub(crate) enum RoleRead {
    /// The query failed.
    Query(tokio_postgres::Error),
    /// It answered, but not one row of `(bool, on/off)`.
    Answer,
}

/// Reads the server's role: in recovery → [`Role::Replica`]; else
/// read-only transactions by default → [`Role::ReadOnly`]; else
/// [`Role::Primary`].
pub(crate) async fn read_role(client: &Client) -> Result<Role, RoleRead> {
    let messages = client
        .simple_query(ROLE_QUERY)
        .await
        .map_err(RoleRead::Query)?;
    let row = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .ok_or(RoleRead::Answer)?;
    role_from(row.get(0), row.get(1)).ok_or(RoleRead::Answer)
}

/// The role the two answers mean, in the text form a simple query returns.
fn role_from(in_recovery: Option<&str>, read_only: Option<&str>) -> Option<Role> {
    match (in_recovery?, read_only?) {
        ("t", _) => Some(Role::Replica),
        ("f", "on") => Some(Role::ReadOnly),
        ("f", "off") => Some(Role::Primary),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_wins_over_read_only_and_anything_else_is_no_answer() {
        assert_eq!(role_from(Some("t"), Some("on")), Some(Role::Replica));
        assert_eq!(role_from(Some("f"), Some("on")), Some(Role::ReadOnly));
        assert_eq!(role_from(Some("f"), Some("off")), Some(Role::Primary));
        assert_eq!(role_from(Some("x"), Some("off")), None);
        assert_eq!(role_from(None, Some("off")), None);
    }
}
