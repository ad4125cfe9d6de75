//! Activity-log pagination: one page in memory at a time, `pages.next` followed only on the
//! configured origin, a hard page cap, and stop rules that survive a misbehaving server.
//!
//! The live API sends `pages.next` as a full URL; the spec documents a cursor object
//! `{starting_after, per_page}` to send back as query parameters. Both are handled.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use url::Url;

use super::client::Session;
use super::error::IntercomError;
use super::models::{ActivityLog, ActivityLogPage, NextPage};
use super::response::decode;

pub(crate) const ACTIVITY_LOGS: &str = "/admins/activity_logs";

/// Whether `candidate` may receive the token: same scheme, host and port as the configured
/// regional base URL, no credentials in the URL, and a path under the base path.
pub fn check_same_origin(base: &Url, candidate: &Url, endpoint: &str) -> Result<(), IntercomError> {
    let base_path = base.path().trim_end_matches('/');
    let path = candidate.path();
    let path_ok = path == base_path
        || path
            .strip_prefix(base_path)
            .is_some_and(|rest| rest.starts_with('/'));
    let same = candidate.scheme() == base.scheme()
        && candidate.host_str() == base.host_str()
        && candidate.port_or_known_default() == base.port_or_known_default()
        && candidate.username().is_empty()
        && candidate.password().is_none()
        && path_ok;
    if same {
        Ok(())
    } else {
        Err(IntercomError::ForeignOrigin {
            endpoint: endpoint.to_string(),
            // The origin only: enough to diagnose, and never a query string echoed into logs.
            url_origin: format!("{}{}", candidate.origin().ascii_serialization(), path),
            expected_origin: format!("{}{}", base.origin().ascii_serialization(), base_path),
        })
    }
}

enum State {
    Fetch(Url),
    /// A page was delivered, but what it pointed to next cannot be followed. Reported on the
    /// following call so the delivered page is not lost.
    Failed(IntercomError),
    Done,
}

/// Pages of `GET /admins/activity_logs`, newest first, fetched on demand.
///
/// Stops on a null/absent `next`, on `page >= total_pages`, on an empty page, or when `next`
/// points at a URL already visited (a loop). More than `intercom.max_pages` pages is an
/// error (`TooLarge`), not a silent truncation: an incomplete history must not look complete.
/// After an error the same page can be requested again by calling `next_page` again.
pub struct ActivityLogPager {
    session: Session,
    first: Url,
    state: State,
    pages_fetched: u32,
    /// Hashes of visited URLs: catches cycles longer than one page in bounded memory.
    visited: HashSet<u64>,
}

impl std::fmt::Debug for ActivityLogPager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityLogPager")
            .field("pages_fetched", &self.pages_fetched)
            .finish_non_exhaustive()
    }
}

impl ActivityLogPager {
    pub(crate) fn new(session: Session, first: Url) -> Self {
        Self {
            session,
            first: first.clone(),
            state: State::Fetch(first),
            pages_fetched: 0,
            visited: HashSet::new(),
        }
    }

    /// Pages successfully fetched and decoded so far.
    pub fn pages_fetched(&self) -> u32 {
        self.pages_fetched
    }

    /// The next page's entries, or `None` when the log is exhausted.
    pub async fn next_page(&mut self) -> Result<Option<Vec<ActivityLog>>, IntercomError> {
        // Page bodies (decode errors) and `pages.next` (foreign-origin errors quote its
        // path) come from the server: scrub the token out of whatever they produce.
        self.next_page_unscrubbed()
            .await
            .map_err(|e| self.session.scrub(e))
    }

    async fn next_page_unscrubbed(&mut self) -> Result<Option<Vec<ActivityLog>>, IntercomError> {
        let url = match std::mem::replace(&mut self.state, State::Done) {
            State::Done => return Ok(None),
            State::Failed(e) => {
                self.state = State::Failed(e.clone());
                return Err(e);
            }
            State::Fetch(url) => url,
        };
        let max_pages = self.session.settings().max_pages;
        if self.pages_fetched >= max_pages {
            let e = IntercomError::TooLarge {
                endpoint: ACTIVITY_LOGS.to_string(),
                reason: format!("more than intercom.max_pages ({max_pages}) pages"),
            };
            self.state = State::Failed(e.clone());
            return Err(e);
        }
        let page: ActivityLogPage = match self.fetch(&url).await {
            Ok(page) => page,
            Err(e) => {
                self.state = State::Fetch(url);
                return Err(e);
            }
        };
        self.pages_fetched += 1;
        self.visited.insert(url_hash(&url));
        self.state = match self.following(&page) {
            Ok(Some(next)) if self.visited.contains(&url_hash(&next)) => {
                tracing::warn!(
                    pages = self.pages_fetched,
                    "activity log pages.next points at a page already read; stopping"
                );
                State::Done
            }
            Ok(Some(next)) => State::Fetch(next),
            Ok(None) => State::Done,
            Err(e) => State::Failed(e),
        };
        if page.activity_logs.is_empty() {
            self.state = State::Done;
            return Ok(None);
        }
        Ok(Some(page.activity_logs))
    }

    async fn fetch(&self, url: &Url) -> Result<ActivityLogPage, IntercomError> {
        let body = self.session.get(ACTIVITY_LOGS, url.clone()).await?;
        decode(ACTIVITY_LOGS, &body)
    }

    /// Where the page says to go next, validated; `None` when this was the last page.
    fn following(&self, page: &ActivityLogPage) -> Result<Option<Url>, IntercomError> {
        let Some(pages) = &page.pages else {
            return Ok(None);
        };
        if let (Some(current), Some(total)) = (pages.page, pages.total_pages) {
            if current >= total {
                return Ok(None);
            }
        }
        let next = match &pages.next {
            None => return Ok(None),
            Some(NextPage::Url(raw)) if raw.trim().is_empty() => return Ok(None),
            Some(NextPage::Url(raw)) => {
                // A relative reference resolves against the page it came from.
                self.first
                    .join(raw.trim())
                    .map_err(|e| IntercomError::Decode {
                        endpoint: ACTIVITY_LOGS.to_string(),
                        path: "pages.next".into(),
                        reason: format!("not a URL: {e}"),
                    })?
            }
            Some(NextPage::Cursor {
                starting_after: None,
                ..
            }) => return Ok(None),
            Some(NextPage::Cursor {
                starting_after: Some(cursor),
                per_page,
            }) => self.cursor_url(cursor, *per_page),
        };
        check_same_origin(self.session.base(), &next, ACTIVITY_LOGS)?;
        Ok(Some(next))
    }

    /// The spec's cursor form: the first request again, plus `starting_after` (and the
    /// server's `per_page` when it names one).
    fn cursor_url(&self, cursor: &str, per_page: Option<i64>) -> Url {
        let mut url = self.first.clone();
        let kept: Vec<(String, String)> = self
            .first
            .query_pairs()
            .filter(|(k, _)| {
                k != "starting_after" && k != "page" && !(per_page.is_some() && k == "per_page")
            })
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        {
            let mut q = url.query_pairs_mut();
            q.clear();
            q.extend_pairs(kept);
            if let Some(n) = per_page {
                q.append_pair("per_page", &n.to_string());
            }
            q.append_pair("starting_after", cursor);
        }
        url
    }
}

fn url_hash(url: &Url) -> u64 {
    let mut h = DefaultHasher::new();
    url.as_str().hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn same_origin_rule() {
        let base = u("https://api.intercom.io");
        let ok = |s: &str| check_same_origin(&base, &u(s), "/x").is_ok();
        assert!(ok("https://api.intercom.io/admins/activity_logs?page=2"));
        assert!(ok("https://api.intercom.io:443/admins/activity_logs"));
        assert!(!ok("http://api.intercom.io/admins/activity_logs"));
        assert!(!ok("https://api.intercom.io:8443/admins/activity_logs"));
        assert!(!ok("https://api.eu.intercom.io/admins/activity_logs"));
        assert!(!ok("https://api.intercom.io.evil.example/admins"));
        assert!(!ok("https://user:pw@api.intercom.io/admins/activity_logs"));

        let prefixed = u("http://127.0.0.1:8080/us/");
        let ok = |s: &str| check_same_origin(&prefixed, &u(s), "/x").is_ok();
        assert!(ok("http://127.0.0.1:8080/us/admins/activity_logs"));
        assert!(!ok("http://127.0.0.1:8080/eu/admins/activity_logs"));
        assert!(!ok("http://127.0.0.1:8080/us-evil/admins/activity_logs"));
        assert!(!ok("http://localhost:8080/us/admins/activity_logs"));
    }

    #[test]
    fn foreign_origin_message_carries_no_query() {
        let e = check_same_origin(
            &u("https://api.intercom.io"),
            &u("https://evil.example/steal?token=abc"),
            "/admins/activity_logs",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("https://evil.example/steal"), "{text}");
        assert!(!text.contains("token=abc"), "{text}");
    }
}
