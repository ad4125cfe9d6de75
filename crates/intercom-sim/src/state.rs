//! The simulator's live state and the handle tests use to change it while it serves.
//!
//! Hot path: a token is looked up in one of `SHARDS` read-locked maps, which yields its
//! workspace cell; the workspace's data is an immutable `Arc<Workspace>` swapped whole on
//! change, so a request holds no lock while it renders. Counters are atomics; the only
//! mutex is the per-workspace rate-limit window, which requests of different workspaces
//! never share.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use super::faults::{ActiveFaults, FaultSpec};
use super::scenario::{AdminSpec, EventSpec, RateLimitSpec, Scenario, ScenarioError, Workspace};

const SHARDS: usize = 16;

/// Locks here guard plain data that a panicking writer cannot leave half-updated (values are
/// swapped whole), so a poisoned lock is still safe to use.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

fn activate(spec: &Option<Box<FaultSpec>>) -> Option<Arc<ActiveFaults>> {
    spec.as_deref().cloned().and_then(ActiveFaults::new)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A workspace as served: its resolved spec, its faults and its rate-limit window.
#[derive(Debug)]
pub(crate) struct WorkspaceCell {
    data: RwLock<Arc<Workspace>>,
    faults: RwLock<Option<Arc<ActiveFaults>>>,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    start: u64,
    count: u32,
}

/// The rate-limit state after counting one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateStatus {
    pub limit: u32,
    pub remaining: u32,
    /// Unix seconds when the window resets.
    pub reset: u64,
    pub exceeded: bool,
}

impl WorkspaceCell {
    fn new(ws: Workspace) -> Self {
        let faults = activate(&ws.faults);
        Self {
            data: RwLock::new(Arc::new(ws)),
            faults: RwLock::new(faults),
            window: Mutex::new(Window::default()),
        }
    }

    pub fn data(&self) -> Arc<Workspace> {
        read(&self.data).clone()
    }

    pub fn faults(&self) -> Option<Arc<ActiveFaults>> {
        read(&self.faults).clone()
    }

    /// Counts a request in the current fixed window (aligned to multiples of the window
    /// length, like Intercom's 10-second windows).
    pub fn count_request(&self, spec: RateLimitSpec, now: u64) -> RateStatus {
        let start = now - now % spec.window_secs;
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.start != start {
            *w = Window { start, count: 0 };
        }
        w.count = w.count.saturating_add(1);
        RateStatus {
            limit: spec.limit,
            remaining: spec.limit.saturating_sub(w.count),
            reset: start + spec.window_secs,
            exceeded: w.count > spec.limit,
        }
    }
}

/// Per-token runtime state (survives changes to the workspace's data).
#[derive(Debug)]
pub(crate) struct TokenRuntime {
    calls: AtomicU64,
    revoked: AtomicBool,
    faults: RwLock<Option<Arc<ActiveFaults>>>,
}

impl TokenRuntime {
    fn new(faults: &Option<Box<FaultSpec>>) -> Self {
        Self {
            calls: AtomicU64::new(0),
            revoked: AtomicBool::new(false),
            faults: RwLock::new(activate(faults)),
        }
    }

    /// Counts a call and returns the running total.
    pub fn count_call(&self) -> u64 {
        self.calls.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Relaxed)
    }

    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Relaxed);
    }

    pub fn faults(&self) -> Option<Arc<ActiveFaults>> {
        read(&self.faults).clone()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct TokenEntry {
    pub workspace: Arc<WorkspaceCell>,
    pub runtime: Arc<TokenRuntime>,
}

/// Workspaces by id, in scenario order. Only the handle touches it; requests go by token.
#[derive(Debug, Default)]
struct Registry {
    by_id: HashMap<String, Arc<WorkspaceCell>>,
    order: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct SimState {
    shards: Vec<RwLock<HashMap<String, TokenEntry>>>,
    registry: RwLock<Registry>,
    pub requests: AtomicU64,
    pub served_429: AtomicU64,
    request_ids: AtomicU64,
    pub shutdown: CancellationToken,
}

impl SimState {
    pub fn new(scenario: Scenario) -> Result<Self, ScenarioError> {
        scenario.validate()?;
        let state = Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            registry: RwLock::new(Registry::default()),
            requests: AtomicU64::new(0),
            served_429: AtomicU64::new(0),
            request_ids: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
        };
        let now = SystemTime::now();
        for mut ws in scenario.workspaces {
            ws.resolve(now);
            state.insert_workspace(ws);
        }
        Ok(state)
    }

    fn shard(&self, token: &str) -> &RwLock<HashMap<String, TokenEntry>> {
        let mut h = DefaultHasher::new();
        token.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    pub fn lookup(&self, token: &str) -> Option<TokenEntry> {
        read(self.shard(token)).get(token).cloned()
    }

    /// A fresh opaque `request_id` for error bodies, shaped like the API's UUIDs.
    pub fn request_id(&self) -> String {
        let n = self.request_ids.fetch_add(1, Ordering::Relaxed);
        format!("00000000-0000-4000-8000-{n:012x}")
    }

    fn insert_workspace(&self, ws: Workspace) {
        let id = ws.id_code.clone();
        let tokens: Vec<(String, Option<Box<FaultSpec>>)> = ws
            .tokens
            .iter()
            .map(|t| (t.token.clone(), t.faults.clone()))
            .collect();
        let cell = Arc::new(WorkspaceCell::new(ws));
        for (token, faults) in tokens {
            let entry = TokenEntry {
                workspace: cell.clone(),
                runtime: Arc::new(TokenRuntime::new(&faults)),
            };
            write(self.shard(&token)).insert(token, entry);
        }
        let mut reg = write(&self.registry);
        reg.order.push(id.clone());
        reg.by_id.insert(id, cell);
    }
}

/// Changes a running simulator's world: teammates, events, tokens, scopes and faults.
/// Cheap to clone; every change is visible to the next request.
#[derive(Debug, Clone)]
pub struct ScenarioHandle {
    state: Arc<SimState>,
}

impl ScenarioHandle {
    pub(crate) fn new(state: Arc<SimState>) -> Self {
        Self { state }
    }

    /// Applies `change` to a copy of the workspace, validates it and swaps it in. Token
    /// counters survive; faults whose spec changed start afresh.
    pub fn update_workspace(
        &self,
        id_code: &str,
        change: impl FnOnce(&mut Workspace),
    ) -> Result<(), ScenarioError> {
        // Holding the registry lock serialises changes; requests never take it.
        let reg = write(&self.state.registry);
        let cell = reg
            .by_id
            .get(id_code)
            .cloned()
            .ok_or_else(|| ScenarioError::UnknownWorkspace(id_code.to_string()))?;
        let old = cell.data();
        let mut new = (*old).clone();
        change(&mut new);
        if new.id_code != old.id_code {
            return Err(ScenarioError::Invalid("id_code cannot be changed".into()));
        }
        new.validate()?;
        for t in &new.tokens {
            if let Some(other) = self.state.lookup(&t.token) {
                if !Arc::ptr_eq(&other.workspace, &cell) {
                    return Err(ScenarioError::Invalid(format!(
                        "workspace {id_code:?}: a token belongs to another workspace"
                    )));
                }
            }
        }
        new.resolve(SystemTime::now());

        for t in &old.tokens {
            if !new.tokens.iter().any(|n| n.token == t.token) {
                write(self.state.shard(&t.token)).remove(&t.token);
            }
        }
        for t in &new.tokens {
            let before = old.tokens.iter().find(|o| o.token == t.token);
            match (before, self.state.lookup(&t.token)) {
                (Some(b), Some(entry)) => {
                    if b.faults != t.faults {
                        *write(&entry.runtime.faults) = activate(&t.faults);
                    }
                }
                _ => {
                    let entry = TokenEntry {
                        workspace: cell.clone(),
                        runtime: Arc::new(TokenRuntime::new(&t.faults)),
                    };
                    write(self.state.shard(&t.token)).insert(t.token.clone(), entry);
                }
            }
        }
        if new.faults != old.faults {
            *write(&cell.faults) = activate(&new.faults);
        }
        *write(&cell.data) = Arc::new(new);
        drop(reg);
        Ok(())
    }

    pub fn add_workspace(&self, mut ws: Workspace) -> Result<(), ScenarioError> {
        ws.validate()?;
        if read(&self.state.registry).by_id.contains_key(&ws.id_code) {
            return Err(ScenarioError::Invalid(format!(
                "duplicate workspace id_code {:?}",
                ws.id_code
            )));
        }
        if ws
            .tokens
            .iter()
            .any(|t| self.state.lookup(&t.token).is_some())
        {
            return Err(ScenarioError::Invalid(
                "a token of the new workspace is already in use".into(),
            ));
        }
        ws.resolve(SystemTime::now());
        self.state.insert_workspace(ws);
        Ok(())
    }

    pub fn add_admin(&self, id_code: &str, admin: AdminSpec) -> Result<(), ScenarioError> {
        self.update_workspace(id_code, |ws| ws.admins.push(admin))
    }

    /// Removes a teammate; `Ok(false)` when there was none with that id.
    pub fn remove_admin(&self, id_code: &str, admin_id: &str) -> Result<bool, ScenarioError> {
        let mut removed = false;
        self.update_workspace(id_code, |ws| {
            let before = ws.admins.len();
            ws.admins.retain(|a| a.id != admin_id);
            removed = ws.admins.len() != before;
        })?;
        Ok(removed)
    }

    pub fn add_event(&self, id_code: &str, event: EventSpec) -> Result<(), ScenarioError> {
        self.update_workspace(id_code, |ws| ws.events.push(event))
    }

    /// From now on the token gets 401 `token_revoked`.
    pub fn revoke_token(&self, token: &str) -> Result<(), ScenarioError> {
        let entry = self
            .state
            .lookup(token)
            .ok_or(ScenarioError::UnknownToken)?;
        entry.runtime.revoke();
        Ok(())
    }

    pub fn set_scopes(&self, token: &str, scopes: &[&str]) -> Result<(), ScenarioError> {
        let id = self.workspace_of(token)?;
        self.update_workspace(&id, |ws| {
            if let Some(t) = ws.tokens.iter_mut().find(|t| t.token == token) {
                t.scopes = scopes.iter().map(|s| s.to_string()).collect();
            }
        })
    }

    /// Replaces the workspace's faults; counters ("next N", "every Nth") restart.
    pub fn set_workspace_faults(
        &self,
        id_code: &str,
        faults: FaultSpec,
    ) -> Result<(), ScenarioError> {
        faults.validate(&format!("workspace {id_code:?} faults"))?;
        let boxed = (!faults.is_empty()).then(|| Box::new(faults.clone()));
        self.update_workspace(id_code, |ws| ws.faults = boxed)?;
        let cell = read(&self.state.registry).by_id.get(id_code).cloned();
        if let Some(cell) = cell {
            *write(&cell.faults) = ActiveFaults::new(faults);
        }
        Ok(())
    }

    /// Replaces one token's faults; counters restart.
    pub fn set_token_faults(&self, token: &str, faults: FaultSpec) -> Result<(), ScenarioError> {
        faults.validate("token faults")?;
        let id = self.workspace_of(token)?;
        let boxed = (!faults.is_empty()).then(|| Box::new(faults.clone()));
        self.update_workspace(&id, |ws| {
            if let Some(t) = ws.tokens.iter_mut().find(|t| t.token == token) {
                t.faults = boxed;
            }
        })?;
        let entry = self
            .state
            .lookup(token)
            .ok_or(ScenarioError::UnknownToken)?;
        *write(&entry.runtime.faults) = ActiveFaults::new(faults);
        Ok(())
    }

    /// Calls made with the token so far (authenticated requests, whatever their outcome).
    pub fn token_calls(&self, token: &str) -> Option<u64> {
        self.state
            .lookup(token)
            .map(|e| e.runtime.calls.load(Ordering::Relaxed))
    }

    /// 429 responses served (injected or from real rate limiting).
    pub fn rate_limited_responses(&self) -> u64 {
        self.state.served_429.load(Ordering::Relaxed)
    }

    /// The current world as a scenario (times resolved to absolute values).
    pub fn snapshot(&self) -> Scenario {
        let reg = read(&self.state.registry);
        Scenario {
            description: None,
            workspaces: reg
                .order
                .iter()
                .filter_map(|id| reg.by_id.get(id))
                .map(|cell| (*cell.data()).clone())
                .collect(),
        }
    }

    fn workspace_of(&self, token: &str) -> Result<String, ScenarioError> {
        let entry = self
            .state
            .lookup(token)
            .ok_or(ScenarioError::UnknownToken)?;
        let id = entry.workspace.data().id_code.clone();
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_and_resets() {
        let cell = WorkspaceCell::new(
            serde_json::from_str(r#"{"id_code":"w","name":"W","region":"us"}"#).unwrap(),
        );
        let spec = RateLimitSpec {
            limit: 2,
            window_secs: 10,
        };
        let a = cell.count_request(spec, 1005);
        assert_eq!((a.remaining, a.reset, a.exceeded), (1, 1010, false));
        let b = cell.count_request(spec, 1009);
        assert_eq!((b.remaining, b.exceeded), (0, false));
        let c = cell.count_request(spec, 1009);
        assert!(c.exceeded);
        let d = cell.count_request(spec, 1010);
        assert_eq!((d.remaining, d.reset, d.exceeded), (1, 1020, false));
    }
}
