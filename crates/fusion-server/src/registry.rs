//! The registered clients. A registration lives while its client calls:
//! one silent for the client timeout is evicted, and the number held is
//! capped, so a flood of Joins under fresh ids can neither grow memory
//! without bound nor get fake ids sampled into every round. The ids are
//! kept sorted and indexed by last call, so the live list and eviction
//! cost no scan of every registration under the state lock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tonic::Status;

use crate::identity::SessionSecret;

/// A registered client.
#[derive(Clone, Debug)]
pub struct ClientEntry {
    /// The secret its latest Join was given; later calls must carry it.
    pub session: SessionSecret,
    /// Examples it declared at Join (capped by `max_examples`): the weight
    /// of its updates.
    pub examples: u64,
    /// Its last call.
    last_seen: Instant,
    /// Whether it has been told the run is finished.
    pub told_finished: bool,
}

impl ClientEntry {
    /// When it last called.
    pub fn last_seen(&self) -> Instant {
        self.last_seen
    }
}

/// What a Join did.
#[derive(Debug)]
pub struct Joined {
    /// The new session, for the reply.
    pub session: SessionSecret,
    /// Whether it replaced the live session of an earlier Join under the
    /// same id (a restarted client, or two processes under one id).
    pub replaced: bool,
}

/// The registered clients, at most `max` of them, each evicted after
/// `timeout` without a call.
#[derive(Debug)]
pub struct Registry {
    entries: BTreeMap<String, ClientEntry>,
    /// (last call, id), oldest first: eviction pops from the front.
    by_last_seen: BTreeSet<(Instant, String)>,
    /// Ids evicted since the round loop last asked ([`Registry::take_evicted`]).
    evicted: Vec<String>,
    max: usize,
    timeout: Duration,
}

impl Registry {
    /// An empty registry holding at most `max` clients, each for `timeout`
    /// after its last call.
    pub fn new(max: usize, timeout: Duration) -> Self {
        Self {
            entries: BTreeMap::new(),
            by_last_seen: BTreeSet::new(),
            evicted: Vec::new(),
            max,
            timeout,
        }
    }

    /// Registers `id` with a fresh session (replacing any earlier one), or
    /// refuses with RESOURCE_EXHAUSTED when `max` other clients are live.
    pub fn join(&mut self, id: &str, examples: u64, now: Instant) -> Result<Joined, Status> {
        self.evict(now);
        let previous = self.entries.remove(id);
        if let Some(p) = &previous {
            self.by_last_seen.remove(&(p.last_seen, id.to_owned()));
        }
        if self.entries.len() >= self.max {
            if let Some(p) = previous {
                self.insert(id, p);
            }
            return Err(Status::resource_exhausted(format!(
                "the server already holds {} live clients (its max_clients); retry later",
                self.max
            )));
        }
        let session = SessionSecret::generate();
        self.insert(
            id,
            ClientEntry {
                session: session.clone(),
                examples,
                last_seen: now,
                told_finished: false,
            },
        );
        Ok(Joined {
            session,
            replaced: previous.is_some(),
        })
    }

    /// Checks that `session` is the one `id`'s latest Join was given
    /// (NOT_FOUND when it never joined, was evicted or the server
    /// restarted, so it joins again; PERMISSION_DENIED when a later Join
    /// under its id replaced the session) and records the call. The second
    /// element of the error is the metrics label.
    pub fn touch(
        &mut self,
        id: &str,
        session: &str,
        now: Instant,
    ) -> Result<&ClientEntry, (Status, &'static str)> {
        self.evict(now);
        let Some(entry) = self.entries.get(id) else {
            return Err((
                Status::not_found(format!(
                    "client `{id}` is not registered (it never joined, was silent past the \
                     client timeout, or the server restarted); call Join"
                )),
                "unknown_client",
            ));
        };
        if !entry.session.matches(session) {
            return Err((
                Status::permission_denied(format!(
                    "this is not the current session of client `{id}`: a later Join under that id \
                     replaced it (two processes share the id, or the id was taken over)"
                )),
                "session",
            ));
        }
        self.seen(id, now);
        Ok(&self.entries[id])
    }

    /// Records that `id` is still at work at `now` (a chunk of its upload
    /// or download moved), so a long transfer does not get it evicted.
    /// The caller checked its session when the transfer began.
    pub fn seen(&mut self, id: &str, now: Instant) {
        if let Some(entry) = self.entries.get_mut(id)
            && now > entry.last_seen
        {
            self.by_last_seen.remove(&(entry.last_seen, id.to_owned()));
            entry.last_seen = now;
            self.by_last_seen.insert((now, id.to_owned()));
        }
    }

    /// Drops every client silent for longer than the timeout at `now`.
    /// Costs one step per client dropped.
    pub fn evict(&mut self, now: Instant) {
        while let Some((seen, _)) = self.by_last_seen.first() {
            if now.saturating_duration_since(*seen) <= self.timeout {
                break;
            }
            if let Some((_, id)) = self.by_last_seen.pop_first() {
                self.entries.remove(&id);
                self.evicted.push(id);
            }
        }
    }

    /// The ids evicted since the last call, so the open round stops
    /// waiting for them. Drained by the round loop at every step, so it
    /// never holds more than the registrations of one step.
    pub fn take_evicted(&mut self) -> Vec<String> {
        std::mem::take(&mut self.evicted)
    }

    /// The live clients' ids, sorted (evicting the silent ones first).
    pub fn live(&mut self, now: Instant) -> Vec<String> {
        self.evict(now);
        self.entries.keys().cloned().collect()
    }

    /// How many clients are live at `now`.
    pub fn live_count(&mut self, now: Instant) -> usize {
        self.evict(now);
        self.entries.len()
    }

    /// The registration of `id`.
    pub fn get(&self, id: &str) -> Option<&ClientEntry> {
        self.entries.get(id)
    }

    /// Notes that `id` has been told the run is finished.
    pub fn tell_finished(&mut self, id: &str) {
        if let Some(c) = self.entries.get_mut(id) {
            c.told_finished = true;
        }
    }

    /// Every registration, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &ClientEntry)> {
        self.entries.iter()
    }

    fn insert(&mut self, id: &str, entry: ClientEntry) {
        self.by_last_seen.insert((entry.last_seen, id.to_owned()));
        self.entries.insert(id.to_owned(), entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_thousand_silent_joins_are_evicted_and_the_cap_holds() {
        let timeout = Duration::from_secs(60);
        let mut registry = Registry::new(10_000, timeout);
        let start = Instant::now();
        for i in 0..10_000 {
            registry
                .join(&format!("fake-{i}"), 1, start)
                .expect("under the cap");
        }
        let refused = registry.join("one-more", 1, start).expect_err("at the cap");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("10000"), "{refused:?}");
        // A known id may join again at the cap: it takes no new place.
        let again = registry.join("fake-7", 1, start).expect("re-join");
        assert!(again.replaced);
        assert_eq!(registry.live_count(start), 10_000);

        // An honest client keeps calling; the fakes fall silent.
        let later = start + timeout / 2;
        let honest = registry.join("honest", 5, later);
        assert!(honest.is_err(), "still full half a timeout later");
        let past = start + timeout + Duration::from_millis(1);
        let honest = registry.join("honest", 5, past).expect("room again");
        assert_eq!(registry.live(past), ["honest"]);
        assert_eq!(registry.take_evicted().len(), 10_000, "each fake, once");
        assert!(registry.take_evicted().is_empty());
        assert!(registry.by_last_seen.len() == 1 && registry.entries.len() == 1);
        let s = honest.session.expose().to_owned();
        let entry = registry
            .touch("honest", &s, past + timeout / 2)
            .expect("touch");
        assert_eq!(entry.examples, 5);
        // Touched, it outlives its Join time by the touch.
        assert_eq!(
            registry.live(past + timeout + Duration::from_secs(1)),
            ["honest"]
        );
        let gone = registry.touch("fake-3", "", past).expect_err("evicted");
        assert_eq!(
            (gone.0.code(), gone.1),
            (tonic::Code::NotFound, "unknown_client")
        );
    }

    #[test]
    fn a_later_join_ends_the_earlier_session() {
        let now = Instant::now();
        let mut registry = Registry::new(4, Duration::from_secs(60));
        let first = registry.join("a", 1, now).expect("join");
        assert!(!first.replaced);
        let second = registry.join("a", 1, now).expect("again");
        assert!(second.replaced);
        let (status, reason) = registry
            .touch("a", first.session.expose(), now)
            .expect_err("replaced");
        assert_eq!(
            (status.code(), reason),
            (tonic::Code::PermissionDenied, "session")
        );
        assert!(registry.touch("a", second.session.expose(), now).is_ok());
        assert_eq!(registry.live_count(now), 1);
    }
}
