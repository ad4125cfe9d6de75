//! The teammate inventory (`sspm.admins`), kept across scans: first/last seen, removal,
//! continuous away time, last activity.

use foldhash::{HashMap, HashSet, HashSetExt};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::checks::AdminHistory;
use crate::intercom::models::Admin;

/// Teammates per upsert statement.
pub(super) const UPSERT_BATCH: usize = 5000;

/// One inventory row as stored: what the checks read (`history`) and what `sync` compares
/// to decide whether the row needs writing. The listed fields are kept as their digest
/// ([`ListedFields::digest`]), not as text: a 20,000-teammate inventory held through a
/// scan cost ~13 MB as strings (benches/README.md, `big_workspace_rescan`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAdmin {
    pub history: AdminHistory,
    pub listed: ListedDigest,
    pub last_login_at: Option<DateTime<Utc>>,
}

/// Digest of the fields `/admins` lists and the upsert stores verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedDigest([u8; 16]);

/// The fields of one teammate that the upsert stores as listed, borrowed from either side
/// of the comparison: a stored row or an `/admins` entry.
#[derive(Clone, Copy)]
pub struct ListedFields<'a> {
    pub name: Option<&'a str>,
    pub email: Option<&'a str>,
    pub job_title: Option<&'a str>,
    pub role: Option<&'a str>,
    pub role_id: Option<&'a str>,
    pub has_inbox_seat: Option<bool>,
    pub away_mode_enabled: Option<bool>,
    pub team_ids: &'a [&'a str],
}

impl ListedFields<'_> {
    /// SHA-256 over the fields, each tagged (absent or present) and length-prefixed, so
    /// that moving text between fields or a `None` against an empty string differ; first
    /// 16 bytes. Only compared within one process, but a cryptographic digest makes an
    /// accidental match (a change not written) out of reach, not merely unlikely.
    pub fn digest(&self) -> ListedDigest {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut text = |v: Option<&str>| match v {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
        };
        text(self.name);
        text(self.email);
        text(self.job_title);
        text(self.role);
        text(self.role_id);
        for flag in [self.has_inbox_seat, self.away_mode_enabled] {
            h.update([match flag {
                None => 0u8,
                Some(false) => 1,
                Some(true) => 2,
            }]);
        }
        h.update((self.team_ids.len() as u64).to_le_bytes());
        for team in self.team_ids {
            h.update((team.len() as u64).to_le_bytes());
            h.update(team.as_bytes());
        }
        let out = h.finalize();
        ListedDigest(out[..16].try_into().expect("16 bytes"))
    }

    /// The fields of an `/admins` entry, with its team ids as the upsert stores them.
    fn of_admin<'a>(a: &'a Admin, team_ids: &'a [&'a str]) -> ListedFields<'a> {
        ListedFields {
            name: a.name.as_deref(),
            email: a.email.as_deref(),
            job_title: a.job_title.as_deref(),
            role: a.role.as_ref().and_then(|r| r.name.as_deref()),
            role_id: a.role.as_ref().and_then(|r| r.id.as_deref()),
            has_inbox_seat: a.has_inbox_seat,
            away_mode_enabled: a.away_mode_enabled,
            team_ids,
        }
    }
}

/// The inventory as read before a scan, and which scan had last finished on the instance
/// then: `sync` trusts the comparison only if no other scan committed in between.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub admins: HashMap<String, StoredAdmin>,
    pub after_scan: Option<Uuid>,
}

/// Inventory of admins not removed, keyed by admin id.
pub async fn current(
    conn: &mut PgConnection,
    instance_id: Uuid,
) -> Result<HashMap<String, StoredAdmin>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT admin_id, first_seen_at, away_since, last_active_at, name, email, job_title, role,
                role_id, has_inbox_seat, away_mode_enabled, team_ids, last_login_at
         FROM sspm.admin_rows
         WHERE instance_id = $1 AND removed_at IS NULL",
        instance_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let team_ids: Vec<&str> = r.team_ids.iter().map(String::as_str).collect();
            let listed = ListedFields {
                name: r.name.as_deref(),
                email: r.email.as_deref(),
                job_title: r.job_title.as_deref(),
                role: r.role.as_deref(),
                role_id: r.role_id.as_deref(),
                has_inbox_seat: r.has_inbox_seat,
                away_mode_enabled: r.away_mode_enabled,
                team_ids: &team_ids,
            }
            .digest();
            (
                r.admin_id,
                StoredAdmin {
                    history: AdminHistory {
                        first_seen_at: r.first_seen_at,
                        away_since: r.away_since,
                        last_active_at: r.last_active_at,
                    },
                    listed,
                    last_login_at: r.last_login_at,
                },
            )
        })
        .collect())
}

/// `GREATEST(stored, seen)` as Postgres computes it (NULLs ignored) leaves `stored` as is.
fn keeps(stored: Option<DateTime<Utc>>, seen: Option<DateTime<Utc>>) -> bool {
    match (stored, seen) {
        (_, None) => true,
        (Some(s), Some(n)) => s >= n,
        (None, Some(_)) => false,
    }
}

/// The team ids as the upsert stores them: joined with ',' and split again in SQL (empty
/// means none), so an id containing a comma is stored split, as it always was.
fn stored_team_ids(teams: &str) -> Vec<&str> {
    if teams.is_empty() {
        Vec::new()
    } else {
        teams.split(',').collect()
    }
}

/// Whether the upsert would leave a stored, not removed, row as it is apart from
/// `last_seen_at`: every listed field equal, away time continuing (or still none), and
/// the activity times not moved forward.
fn unchanged(stored: &StoredAdmin, a: &Admin, teams: &str, act: &AdminActivity) -> bool {
    let away = a.away_mode_enabled == Some(true);
    let team_ids = stored_team_ids(teams);
    stored.listed == ListedFields::of_admin(a, &team_ids).digest()
        && stored.history.away_since.is_some() == away
        && keeps(stored.history.last_active_at, act.last_active_at)
        && keeps(stored.last_login_at, act.last_login_at)
}

/// Per-admin activity seen in this scan's new events.
#[derive(Debug, Default, Clone, Copy)]
pub struct AdminActivity {
    pub last_active_at: Option<DateTime<Utc>>,
    pub last_login_at: Option<DateTime<Utc>>,
}

/// How a scan's write brings the inventory to what `/admins` lists now: the rows that
/// change, upserted with these columns (a row only seen again is not written: its
/// `last_seen_at` is the instance's, migration 20261208000020); and, when a row read
/// before is no longer listed, every listed id (the others are marked removed). Written with the scan's new events by
/// [`super::workspace::write`].
pub struct InventoryWrite<'a> {
    pub(super) now: DateTime<Utc>,
    pub(super) upserts: UpsertColumns<'a>,
    /// None when nobody left: no row is marked removed.
    pub(super) listed: Option<Vec<&'a str>>,
}

/// The upserted teammates as the columns of an `UNNEST`.
#[derive(Default)]
pub(super) struct UpsertColumns<'a> {
    pub ids: Vec<&'a str>,
    pub names: Vec<Option<&'a str>>,
    pub emails: Vec<Option<&'a str>>,
    pub titles: Vec<Option<&'a str>>,
    pub roles: Vec<Option<&'a str>>,
    pub role_ids: Vec<Option<&'a str>>,
    pub seats: Vec<Option<bool>>,
    pub away: Vec<Option<bool>>,
    pub teams: Vec<String>,
    pub last_active: Vec<Option<DateTime<Utc>>>,
    pub last_login: Vec<Option<DateTime<Utc>>>,
}

impl<'a> InventoryWrite<'a> {
    /// `before` is the inventory read before collection; when `current_scan` (the
    /// instance's last scan, read under the scan's lock) is not the one it was read after,
    /// another scan committed meanwhile and every row is upserted.
    pub fn of(
        now: DateTime<Utc>,
        admins: &'a [Admin],
        activity: &HashMap<String, AdminActivity>,
        before: &Inventory,
        current_scan: Option<Uuid>,
    ) -> Self {
        let trusted = before.after_scan == current_scan;
        // The first listing of each id counts (Intercom should not repeat one).
        let mut listed: HashSet<&str> = HashSet::with_capacity(admins.len());
        let mut seen_again: Vec<&str> = Vec::new();
        let mut c = UpsertColumns::default();
        for a in admins {
            let Some(id) = a.id.as_deref().filter(|id| listed.insert(id)) else {
                continue;
            };
            let act = activity.get(id).copied().unwrap_or_default();
            let joined = a.team_ids.as_deref().unwrap_or_default().join(",");
            if trusted
                && before
                    .admins
                    .get(id)
                    .is_some_and(|stored| unchanged(stored, a, &joined, &act))
            {
                seen_again.push(id);
                continue;
            }
            c.names.push(a.name.as_deref());
            c.emails.push(a.email.as_deref());
            c.titles.push(a.job_title.as_deref());
            c.roles
                .push(a.role.as_ref().and_then(|r| r.name.as_deref()));
            c.role_ids
                .push(a.role.as_ref().and_then(|r| r.id.as_deref()));
            c.seats.push(a.has_inbox_seat);
            c.away.push(a.away_mode_enabled);
            c.teams.push(joined);
            c.last_active.push(act.last_active_at);
            c.last_login.push(act.last_login_at);
            c.ids.push(id);
        }
        // Someone left only if a row read before is not listed now (or the read is stale).
        let removals = !trusted || before.admins.keys().any(|id| !listed.contains(id.as_str()));
        let listed = removals.then(|| c.ids.iter().chain(seen_again.iter()).copied().collect());
        Self {
            now,
            upserts: c,
            listed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testutil;

    /// The row `current` would build from what the upsert stored for `a`.
    fn stored(a: &Admin, at: DateTime<Utc>) -> StoredAdmin {
        let team_ids: Vec<&str> = a.team_ids.iter().flatten().map(String::as_str).collect();
        StoredAdmin {
            history: AdminHistory {
                first_seen_at: at,
                away_since: None,
                last_active_at: Some(at),
            },
            listed: ListedFields::of_admin(a, &team_ids).digest(),
            last_login_at: Some(at),
        }
    }

    /// Each field counts, absent differs from empty, and text moved between fields or
    /// between team ids is a change.
    #[test]
    fn the_listed_digest_tells_every_field_apart() {
        let base = ListedFields {
            name: Some("ab"),
            email: None,
            job_title: None,
            role: None,
            role_id: None,
            has_inbox_seat: None,
            away_mode_enabled: None,
            team_ids: &[],
        };
        let d = base.digest();
        assert_eq!(d, base.digest(), "deterministic");
        let variants = [
            ListedFields {
                name: Some("a"),
                email: Some("b"),
                ..base
            },
            ListedFields {
                email: Some(""),
                ..base
            },
            ListedFields {
                job_title: Some("ab"),
                name: None,
                ..base
            },
            ListedFields {
                role: Some("x"),
                ..base
            },
            ListedFields {
                role_id: Some("x"),
                ..base
            },
            ListedFields {
                has_inbox_seat: Some(false),
                ..base
            },
            ListedFields {
                away_mode_enabled: Some(true),
                ..base
            },
            ListedFields {
                team_ids: &[""],
                ..base
            },
        ];
        for v in &variants {
            assert_ne!(v.digest(), d);
        }
        let split = ListedFields {
            team_ids: &["a", "b"],
            ..base
        };
        let joined = ListedFields {
            team_ids: &["ab"],
            ..base
        };
        assert_ne!(split.digest(), joined.digest());
    }

    #[test]
    fn an_admin_listed_as_stored_is_unchanged_and_any_difference_is_a_write() {
        let at = testutil::now();
        let mut a = testutil::admin("7", "seven@acme.example");
        a.team_ids = Some(vec!["t1".into(), "t2".into()]);
        let row = stored(&a, at);
        let teams = "t1,t2";
        let quiet = AdminActivity::default();
        assert!(unchanged(&row, &a, teams, &quiet));
        // Activity no newer than stored moves nothing (GREATEST keeps the stored time).
        let older = AdminActivity {
            last_active_at: Some(at - chrono::Duration::hours(1)),
            last_login_at: Some(at),
        };
        assert!(unchanged(&row, &a, teams, &older));
        let newer = AdminActivity {
            last_active_at: Some(at + chrono::Duration::minutes(1)),
            last_login_at: None,
        };
        assert!(!unchanged(&row, &a, teams, &newer));
        let login = AdminActivity {
            last_active_at: None,
            last_login_at: Some(at + chrono::Duration::minutes(1)),
        };
        assert!(!unchanged(&row, &a, teams, &login));

        let mut renamed = a.clone();
        renamed.name = Some("Someone else".into());
        assert!(!unchanged(&row, &renamed, teams, &quiet));
        let mut no_role = a.clone();
        no_role.role = None;
        assert!(!unchanged(&row, &no_role, teams, &quiet));
        assert!(!unchanged(&row, &a, "t1", &quiet), "a team left");
        // Going away starts away time: the row changes.
        let mut away = a.clone();
        away.away_mode_enabled = Some(true);
        assert!(!unchanged(&row, &away, teams, &quiet));
        // Still away with the period already started: unchanged.
        let mut away_row = stored(&away, at);
        away_row.history.away_since = Some(at);
        assert!(unchanged(&away_row, &away, teams, &quiet));
        // Back from away: away_since ends.
        assert!(!unchanged(&away_row, &a, teams, &quiet));
    }

    #[test]
    fn team_ids_compare_as_the_upsert_stores_them() {
        assert!(stored_team_ids("").is_empty());
        assert_eq!(stored_team_ids("a,b"), vec!["a", "b"]);
        // NULL stored activity is replaced by any seen time; no seen time keeps anything.
        let t = testutil::now();
        assert!(keeps(None, None));
        assert!(!keeps(None, Some(t)));
        assert!(keeps(Some(t), Some(t)));
    }
}
