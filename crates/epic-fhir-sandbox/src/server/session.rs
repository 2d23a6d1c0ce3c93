//! Search sessions: the snapshot of a search's matches behind its `next` links.
//!
//! The first page of a search stores every match (shared `Arc`s of immutable stored versions, so
//! a later update cannot change what the session returns) under a random session id. Each
//! `next` link names the session and the page (`sessionID=<id>-<page>`), so that following a
//! link again after a failed response returns the same page: paging neither skips nor repeats.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::search::ParsedSearch;
use crate::store::StoredResource;

/// One search's snapshot.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) client_id: String,
    pub(crate) query: ParsedSearch,
    pub(crate) matches: Vec<Arc<StoredResource>>,
    pub(crate) page_size: usize,
    /// The estimated memory the snapshot keeps alive, in bytes.
    memory: usize,
    last_used: Mutex<Instant>,
}

impl Session {
    /// The number of pages.
    pub(crate) fn pages(&self) -> usize {
        self.matches.len().div_ceil(self.page_size).max(1)
    }

    /// The matches of page `page` (0-based).
    pub(crate) fn page(&self, page: usize) -> &[Arc<StoredResource>] {
        let start = (page * self.page_size).min(self.matches.len());
        let end = (start + self.page_size).min(self.matches.len());
        &self.matches[start..end]
    }
}

/// Why a session link could not be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionProblem {
    /// The link is not one this server made.
    Malformed,
    /// Unknown, expired after idling, or belonging to another client.
    Expired,
    /// The page number is past the end.
    NoSuchPage,
}

/// All live sessions.
#[derive(Debug)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
    /// Session ids in creation order, for evicting the oldest beyond [`MAX_SESSIONS`]; may
    /// hold ids already removed from `map`.
    order: Mutex<VecDeque<String>>,
    idle_timeout: Duration,
    /// The memory all sessions together may hold; beyond it the oldest are dropped.
    memory_budget: usize,
    /// The estimated memory the sessions in `map` hold (kept under the `map` lock).
    memory: Mutex<usize>,
    /// When expired sessions were last swept out. Sweeping walks every session, so it runs at
    /// most once per [`SWEEP_INTERVAL`], not on every search.
    last_sweep: Mutex<Instant>,
}

/// The most live sessions. Under sustained load every search larger than a page opens one;
/// beyond this many, or beyond the memory budget, the oldest are dropped (their links then
/// answer 4113, as expired ones do), so memory stays bounded whatever the idle timeout.
pub(crate) const MAX_SESSIONS: usize = 20_000;

/// The least time between two sweeps of expired sessions.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

impl Sessions {
    pub(crate) fn new(idle_timeout: Duration, memory_budget: usize) -> Self {
        Sessions {
            map: Mutex::new(HashMap::new()),
            order: Mutex::new(VecDeque::new()),
            idle_timeout,
            memory_budget,
            memory: Mutex::new(0),
            last_sweep: Mutex::new(Instant::now()),
        }
    }

    /// Stores a snapshot and returns its id.
    pub(crate) fn create(
        &self,
        client_id: &str,
        query: ParsedSearch,
        matches: Vec<Arc<StoredResource>>,
        page_size: usize,
    ) -> (String, Arc<Session>) {
        let mut bytes = [0u8; 16];
        // A failing system RNG would leave zeros; sessions would still work, only guessably,
        // and they are bound to the client anyway.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        // The snapshot shares the stored bytes but keeps them alive after an update replaces
        // them, so their JSON counts in full, plus a pointer per match and the session itself.
        let memory = std::mem::size_of::<Session>()
            + matches
                .iter()
                .map(|r| r.json().len() + std::mem::size_of::<Arc<StoredResource>>())
                .sum::<usize>();
        let session = Arc::new(Session {
            client_id: client_id.to_owned(),
            query,
            matches,
            page_size,
            memory,
            last_used: Mutex::new(Instant::now()),
        });
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let sweep_due = {
            let mut last = self
                .last_sweep
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let due = last.elapsed() >= SWEEP_INTERVAL;
            if due {
                *last = Instant::now();
            }
            due
        };
        let mut held = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        if sweep_due {
            let idle = self.idle_timeout;
            map.retain(|_, s| {
                let live = s
                    .last_used
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .elapsed()
                    < idle;
                if !live {
                    *held = held.saturating_sub(s.memory);
                }
                live
            });
        }
        *held += session.memory;
        map.insert(id.clone(), Arc::clone(&session));
        let mut order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
        if sweep_due {
            order.retain(|id| map.contains_key(id));
        }
        order.push_back(id.clone());
        // The newest session is never evicted by the budget: the search that made it must be
        // able to serve its next page (one search is bounded by the store's own size).
        while map.len() > MAX_SESSIONS || (*held > self.memory_budget && map.len() > 1) {
            match order.pop_front() {
                Some(oldest) if oldest == id => order.push_back(oldest),
                Some(oldest) => {
                    if let Some(evicted) = map.remove(&oldest) {
                        *held = held.saturating_sub(evicted.memory);
                    }
                }
                None => break,
            }
        }
        (id, session)
    }

    /// Resolves `sessionID=<id>-<page>` for `client_id`.
    pub(crate) fn resolve(
        &self,
        value: &str,
        client_id: &str,
    ) -> Result<(Arc<Session>, usize), SessionProblem> {
        let (id, page) = value.rsplit_once('-').ok_or(SessionProblem::Malformed)?;
        let page: usize = page.parse().map_err(|_| SessionProblem::Malformed)?;
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let session = map.get(id).cloned().ok_or(SessionProblem::Expired)?;
        {
            let mut last_used = session
                .last_used
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last_used.elapsed() >= self.idle_timeout {
                drop(last_used);
                if let Some(expired) = map.remove(id) {
                    let mut held = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
                    *held = held.saturating_sub(expired.memory);
                }
                return Err(SessionProblem::Expired);
            }
            *last_used = Instant::now();
        }
        if session.client_id != client_id {
            return Err(SessionProblem::Expired);
        }
        if page >= session.pages() {
            return Err(SessionProblem::NoSuchPage);
        }
        Ok((session, page))
    }

    /// The estimated memory the live sessions hold, in bytes.
    pub(crate) fn memory(&self) -> usize {
        let _map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        *self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The number of live sessions.
    pub(crate) fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> ParsedSearch {
        crate::search::parse("Patient", &[("_id", "x")]).expect("query")
    }

    #[test]
    fn the_oldest_sessions_are_dropped_beyond_the_cap() {
        let sessions = Sessions::new(Duration::from_secs(600), usize::MAX);
        let mut ids = Vec::new();
        for _ in 0..MAX_SESSIONS + 5 {
            let (id, _) = sessions.create("client", query(), Vec::new(), 10);
            ids.push(id);
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert_eq!(
            sessions.resolve(&format!("{}-0", ids[0]), "client").err(),
            Some(SessionProblem::Expired)
        );
        let newest = ids.last().expect("id");
        assert!(sessions.resolve(&format!("{newest}-0"), "client").is_ok());
        assert_eq!(
            sessions
                .resolve(&format!("{newest}-0"), "another-client")
                .err(),
            Some(SessionProblem::Expired)
        );
        assert_eq!(
            sessions.resolve(&format!("{newest}-1"), "client").err(),
            Some(SessionProblem::NoSuchPage)
        );
        assert_eq!(
            sessions.resolve("no-page-number", "client").err(),
            Some(SessionProblem::Malformed)
        );
    }

    #[test]
    fn idle_sessions_expire() {
        let sessions = Sessions::new(Duration::ZERO, usize::MAX);
        let (id, _) = sessions.create("client", query(), Vec::new(), 10);
        assert_eq!(
            sessions.resolve(&format!("{id}-0"), "client").err(),
            Some(SessionProblem::Expired)
        );
    }
}
