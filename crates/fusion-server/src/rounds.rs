//! Round bookkeeping: who is live, who was sampled, what has arrived.
//! Plain data and decisions, no I/O, so the rules can be tested alone.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fusion_core::{Instructions, ParamSet};
use fusion_net::{Payload, check_manifest, pb};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use tonic::Status;

use crate::aggregator::Aggregator;
use crate::config::ServerConfig;
use crate::registry::Registry;

/// The global model a round starts from.
#[derive(Debug)]
pub struct GlobalModel {
    /// Its parameters.
    pub params: Arc<ParamSet>,
    /// Encoded once, streamed to every client.
    pub payload: Payload,
}

/// The round being collected.
#[derive(Debug)]
pub struct OpenRound {
    /// Which try of this round (retries re-sample).
    pub attempt: u32,
    /// Clients asked to train.
    pub sampled: BTreeSet<String>,
    /// The exchange being collected (0 trains; the strategy may add
    /// exchanges of statistics only).
    pub exchange: u32,
    /// What clients compute and send in this exchange.
    pub instructions: Instructions,
    /// The statistics' manifest every update of this exchange must carry.
    pub statistics: Vec<pb::TensorMeta>,
    /// The model this exchange's statistics are computed with, encoded
    /// once for every client (exchanges after 0).
    pub exchange_model: Option<Payload>,
    /// Clients due in this exchange: the sampled ones in exchange 0, then
    /// those whose update the previous exchange accepted.
    pub expected: BTreeSet<String>,
    /// When the exchange closes with what it has.
    pub deadline: Instant,
    /// Clients whose update this exchange accepted.
    pub accepted: BTreeSet<String>,
    /// Clients whose upload is being received.
    pub in_flight: HashSet<String>,
    /// Folds updates in.
    pub aggregator: Aggregator,
    /// Set when the round stops taking updates.
    pub closing: bool,
}

/// What the round loop should do next.
#[derive(Debug)]
pub enum Step {
    /// Nothing yet.
    Wait,
    /// Open the round for these clients.
    Open(Vec<String>),
    /// End the open exchange: open the strategy's next one, or merge.
    Close(Aggregator),
    /// Too few updates by the deadline: abandon this try.
    Retry {
        /// Updates that had arrived.
        accepted: usize,
    },
    /// The run is over and every live client knows.
    Exit,
}

/// The server's mutable state, behind one mutex held only briefly.
#[derive(Debug)]
pub struct RoundState {
    /// Registered clients.
    pub clients: Registry,
    /// Round being worked on, from 1 (`rounds + 1` once finished).
    pub round: u32,
    /// Tries of the current round so far.
    pub attempts: u32,
    /// When the current round first opened.
    pub round_started: Option<Instant>,
    /// The model the round starts from.
    pub global: Arc<GlobalModel>,
    /// The round being collected, if any.
    pub open: Option<OpenRound>,
    /// When the last round completed, once it has.
    pub finished_at: Option<Instant>,
}

/// The slot an upload holds while its bytes arrive.
#[derive(Debug)]
pub struct Ticket {
    /// The update's example counts: claimed, and the weight it gets.
    pub examples: Examples,
    /// The round it is for.
    pub round: u32,
    /// The try of the round.
    pub attempt: u32,
    /// The exchange of the round.
    pub exchange: u32,
    /// Whether the exchange asked for weights.
    pub send_weights: bool,
    /// The client.
    pub client: String,
    /// Where the update goes once verified.
    pub aggregator: Aggregator,
    /// The exchange's deadline: an upload still arriving then is cut, so
    /// no peer holds the round (or an upload slot) past it.
    pub deadline: Instant,
}

/// An update's example counts. The header's claim is untrusted: the weight
/// the server uses is the claim capped at what the client declared at
/// Join (itself capped by `max_examples`), so a client cannot outweigh the
/// others by claiming more in an upload than it joined with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Examples {
    /// What the upload's header claimed.
    pub claimed: u64,
    /// The weight used: `min(claimed, examples at Join)`.
    pub used: u64,
}

impl RoundState {
    /// Fresh state at `round` with `global`, no client registered yet.
    pub fn new(round: u32, global: Arc<GlobalModel>, rounds: u32, clients: Registry) -> Self {
        let finished = round > rounds;
        Self {
            clients,
            round,
            attempts: 0,
            round_started: None,
            global,
            open: None,
            finished_at: finished.then(Instant::now),
        }
    }

    /// Whether the last round has completed.
    pub fn finished(&self) -> bool {
        self.finished_at.is_some()
    }

    /// Clients heard from within the client timeout, sorted.
    pub fn live(&mut self, now: Instant) -> Vec<String> {
        self.clients.live(now)
    }

    /// The next instruction for `client`.
    pub fn instruction(
        &mut self,
        client: &str,
        now: Instant,
        config: &ServerConfig,
    ) -> pb::HeartbeatReply {
        let mut reply = pb::HeartbeatReply {
            action: pb::Action::Wait as i32,
            round: self.round.min(config.rounds),
            from_own_init: false,
            proximal_mu: config.proximal_mu as f32,
            deadline_ms: 0,
            poll_ms: config.poll_ms,
            exchange: 0,
            send_weights: false,
            statistics: Vec::new(),
            attempt: 0,
        };
        if self.finished() {
            self.clients.tell_finished(client);
            reply.action = pb::Action::Finished as i32;
            return reply;
        }
        if let Some(open) = &self.open {
            reply.deadline_ms = open.deadline.saturating_duration_since(now).as_millis() as u64;
            reply.attempt = open.attempt;
            let due = !open.closing
                && open.expected.contains(client)
                && !open.accepted.contains(client)
                && !open.in_flight.contains(client);
            if due {
                let i = &open.instructions;
                reply.action = if i.train {
                    pb::Action::Train
                } else {
                    pb::Action::Compute
                } as i32;
                reply.from_own_init = config.from_own_init(self.round);
                reply.exchange = open.exchange;
                reply.send_weights = i.send_weights;
                reply.statistics = i.statistics.iter().map(|r| r.name()).collect();
            }
        }
        reply
    }

    /// Decides the round loop's next step at `now`.
    pub fn step(&mut self, now: Instant, config: &ServerConfig) -> Step {
        if let Some(done) = self.finished_at {
            // Exit early only once a federation's worth of clients (at
            // least min_clients) has heard, and every live one has. A server
            // restarted on a finished run meets its clients one by one: had
            // it left after the first (or, vacuously, before any), the rest
            // would retry until they give up. Otherwise it waits its grace.
            let live = self.live(now);
            let told = self.clients.iter().filter(|(_, c)| c.told_finished).count();
            let all_told = told >= config.min_clients as usize
                && live
                    .iter()
                    .all(|id| self.clients.get(id).is_some_and(|c| c.told_finished));
            let grace = Duration::from_secs_f64(config.finish_grace_secs);
            return if all_told || now.saturating_duration_since(done) >= grace {
                Step::Exit
            } else {
                Step::Wait
            };
        }
        self.clients.evict(now);
        let gone = self.clients.take_evicted();
        match &mut self.open {
            Some(open) if !open.closing => {
                // A client evicted (silent past the client timeout: gone,
                // or restarted) is not waited for; the exchange completes
                // with the others. fusion-client heartbeats while it
                // trains, so a training client is never evicted.
                for id in &gone {
                    if !open.accepted.contains(id) && !open.in_flight.contains(id) {
                        open.expected.remove(id);
                    }
                }
                let complete =
                    open.accepted.len() == open.expected.len() && open.in_flight.is_empty();
                // An optional exchange (BatchNorm statistics after the
                // merge) ends with whatever it has: the merge is made.
                let optional = open.instructions.optional;
                if complete && open.accepted.is_empty() && !optional {
                    // Every client it waited for is gone: sample the live
                    // ones again now rather than wait for the deadline.
                    self.open = None;
                    return Step::Retry { accepted: 0 };
                }
                if complete {
                    open.closing = true;
                    return Step::Close(open.aggregator.clone());
                }
                if now >= open.deadline {
                    let accepted = open.accepted.len();
                    if accepted as u32 >= config.min_updates() || optional {
                        open.closing = true;
                        return Step::Close(open.aggregator.clone());
                    }
                    self.open = None;
                    return Step::Retry { accepted };
                }
                Step::Wait
            }
            Some(_) => Step::Wait,
            None => {
                let live = self.live(now);
                if (live.len() as u32) < config.min_clients {
                    return Step::Wait;
                }
                Step::Open(sample(
                    live,
                    config.fraction,
                    config.min_clients,
                    config.seed,
                    self.round,
                    self.attempts + 1,
                ))
            }
        }
    }

    /// Admits the upload announced by `header`, or says exactly why not:
    /// the round and exchange must be open, the client due in it, and the
    /// header's manifests exactly what the exchange asks for (`weights` is
    /// the global model's manifest), checked before anything is allocated
    /// for the payload. The second element of the error is the metrics label.
    pub fn admit(
        &mut self,
        header: &pb::Header,
        weights: &[pb::TensorMeta],
    ) -> Result<Ticket, (Status, &'static str)> {
        let client = header.client_id.clone();
        let joined = self
            .clients
            .touch(&client, &header.session, Instant::now())?
            .examples;
        if header.examples == 0 {
            return Err((
                Status::invalid_argument("examples must be at least 1: it is the update's weight"),
                "bad_examples",
            ));
        }
        let examples = Examples {
            claimed: header.examples,
            used: header.examples.min(joined),
        };
        if header.round < self.round {
            return Err((
                Status::aborted(format!(
                    "update for round {}, which is over; the current round is {}",
                    header.round, self.round
                )),
                "old_round",
            ));
        }
        if header.round > self.round || self.finished() {
            return Err((
                Status::aborted(format!(
                    "update for round {}, which has not opened; the current round is {}",
                    header.round, self.round
                )),
                "future_round",
            ));
        }
        let round = self.round;
        let Some(open) = self.open.as_mut().filter(|o| !o.closing) else {
            return Err((
                Status::aborted(format!(
                    "round {round} is not taking updates (closed at its deadline, or not yet open)"
                )),
                "late",
            ));
        };
        if header.exchange != open.exchange {
            return Err((
                Status::aborted(format!(
                    "update for exchange {} of round {round}, but exchange {} is open",
                    header.exchange, open.exchange
                )),
                "wrong_exchange",
            ));
        }
        if !open.sampled.contains(&client) {
            return Err((
                Status::failed_precondition(format!(
                    "client `{client}` was not sampled for round {round}"
                )),
                "not_sampled",
            ));
        }
        if !open.expected.contains(&client) {
            return Err((
                Status::failed_precondition(format!(
                    "client `{client}` has no accepted update in the previous exchange of round {round}"
                )),
                "not_sampled",
            ));
        }
        let wire = |e: fusion_net::WireError| (e.to_status(), e.reason());
        let no_weights: &[pb::TensorMeta] = &[];
        let expected_weights = if open.instructions.send_weights {
            weights
        } else {
            no_weights
        };
        check_manifest(expected_weights, &header.manifest).map_err(|e| {
            if open.instructions.send_weights {
                wire(e)
            } else {
                (
                    Status::invalid_argument(format!(
                        "exchange {} of round {round} takes statistics only, but the upload carries {} weight tensors",
                        open.exchange,
                        header.manifest.len()
                    )),
                    "manifest",
                )
            }
        })?;
        check_manifest(&open.statistics, &header.statistics).map_err(|e| {
            let asked: Vec<&str> = open.statistics.iter().map(|m| m.name.as_str()).collect();
            (
                Status::invalid_argument(format!(
                    "statistics differ from those exchange {} asks for ({}): {e}",
                    open.exchange,
                    if asked.is_empty() {
                        "none".to_owned()
                    } else {
                        asked.join(", ")
                    }
                )),
                "statistics",
            )
        })?;
        if open.accepted.contains(&client) {
            return Err((
                Status::already_exists(format!(
                    "client `{client}` already has an update in round {round}"
                )),
                "duplicate",
            ));
        }
        if !open.in_flight.insert(client.clone()) {
            return Err((
                Status::already_exists(format!(
                    "an upload from `{client}` for round {round} is already in progress"
                )),
                "duplicate",
            ));
        }
        Ok(Ticket {
            examples,
            round,
            attempt: open.attempt,
            exchange: open.exchange,
            send_weights: open.instructions.send_weights,
            client,
            aggregator: open.aggregator.clone(),
            deadline: open.deadline,
        })
    }

    /// Ends `ticket`'s upload: merged (`accepted`) or abandoned. Returns
    /// the updates accepted so far, or `None` when the round, this try of
    /// it, or this exchange is gone: a retried round discards what it had
    /// folded in. The upload's slot is freed whatever the exchange, so an
    /// upload that outlived its exchange never holds up the next one.
    pub fn settle(&mut self, ticket: &Ticket, accepted: bool) -> Option<usize> {
        match self.open.as_mut() {
            Some(open) if self.round == ticket.round && open.attempt == ticket.attempt => {
                open.in_flight.remove(&ticket.client);
                if open.exchange != ticket.exchange {
                    return None;
                }
                if accepted {
                    open.accepted.insert(ticket.client.clone());
                }
                Some(open.accepted.len())
            }
            _ => None,
        }
    }
}

/// Picks `max(min, ceil(fraction × live))` of the live clients (all of
/// them if fewer), reproducibly from the seed, round and try.
pub fn sample(
    mut live: Vec<String>,
    fraction: f64,
    min: u32,
    seed: u64,
    round: u32,
    attempt: u32,
) -> Vec<String> {
    let wanted = ((live.len() as f64 * fraction).ceil() as usize)
        .max(min as usize)
        .min(live.len());
    let mut rng = StdRng::seed_from_u64(seed ^ (u64::from(round) << 32) ^ u64::from(attempt));
    live.shuffle(&mut rng);
    live.truncate(wanted);
    live.sort();
    live
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_respects_fraction_minimum_and_seed() {
        let live: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
        assert_eq!(sample(live.clone(), 0.3, 2, 1, 1, 1).len(), 3);
        assert_eq!(sample(live.clone(), 0.1, 4, 1, 1, 1).len(), 4);
        assert_eq!(sample(live.clone(), 1.0, 2, 1, 1, 1), live);
        assert_eq!(
            sample(live.clone(), 0.5, 1, 7, 2, 1),
            sample(live.clone(), 0.5, 1, 7, 2, 1)
        );
        let picks: BTreeSet<Vec<String>> = (0..8)
            .map(|a| sample(live.clone(), 0.3, 1, 7, 2, a))
            .collect();
        assert!(picks.len() > 1, "retries draw other clients");
    }

    fn finished_state() -> RoundState {
        let params = Arc::new(fusion_core::synthetic::random_mlp(&[4, 3, 2], 0));
        let payload = Payload::from_params(&params).expect("payload");
        // Round 3 of 2: a server resumed on a run whose rounds are all done.
        let clients = Registry::new(100, ServerConfig::default().client_timeout());
        RoundState::new(3, Arc::new(GlobalModel { params, payload }), 2, clients)
    }

    fn join(state: &mut RoundState, client: &str, now: Instant) {
        state.clients.join(client, 1, now).expect("joined");
    }

    #[test]
    fn a_resumed_finished_run_waits_for_its_clients_to_hear_it() {
        let config = ServerConfig::default();
        let grace = Duration::from_secs_f64(config.finish_grace_secs);
        let mut state = finished_state();
        let start = state.finished_at.expect("finished");
        // No client seen yet: wait, not exit, until the grace is over.
        assert!(matches!(state.step(start, &config), Step::Wait));
        assert!(matches!(state.step(start + grace / 2, &config), Step::Wait));
        assert!(matches!(state.step(start + grace, &config), Step::Exit));

        // Clients that join within the grace are told; the server goes
        // once min_clients (2 here) have heard, not after the first.
        assert_eq!(config.min_clients, 2);
        let mut state = finished_state();
        let now = state.finished_at.expect("finished") + grace / 4;
        join(&mut state, "first", now);
        assert!(matches!(state.step(now, &config), Step::Wait));
        let reply = state.instruction("first", now, &config);
        assert_eq!(reply.action, pb::Action::Finished as i32);
        assert!(matches!(state.step(now, &config), Step::Wait));
        join(&mut state, "second", now);
        state.instruction("second", now, &config);
        assert!(matches!(state.step(now, &config), Step::Exit));
    }
}
