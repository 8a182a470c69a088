//! The round's aggregation, on a thread of its own: alignment and
//! least-squares solves are heavy compute and must not stall the async
//! runtime that serves clients.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use fusion_core::{Instructions, MergeOutcome, ModelReport, RoundContext, Strategy, Update};
use tokio::sync::oneshot;

/// What the round's aggregation produced.
#[derive(Debug)]
pub struct Aggregated {
    /// The merged model and a report per update of exchange 0.
    pub outcome: MergeOutcome,
    /// Client ids (and examples) in the order their exchange-0 updates
    /// were folded in.
    pub clients: Vec<(String, u64)>,
    /// Seconds spent inside the strategy.
    pub seconds: f64,
}

enum Command {
    Add {
        client: String,
        exchange: u32,
        examples: u64,
        update: Update,
        reply: oneshot::Sender<Result<ModelReport, String>>,
    },
    Advance {
        reply: oneshot::Sender<Result<Option<Instructions>, String>>,
    },
    Finish {
        reply: oneshot::Sender<Result<Aggregated, String>>,
    },
}

/// Handle to one round's aggregation thread. Updates are folded in as they
/// arrive (for `fedavg`, `align` to a fixed reference, `regmean` and
/// `layerwise` into running sums, so memory does not grow with clients).
/// Dropping the handle abandons the round: the thread ends and its partial
/// sums are discarded.
#[derive(Clone, Debug)]
pub struct Aggregator {
    commands: mpsc::Sender<Command>,
}

impl Aggregator {
    /// Starts the thread and the strategy's aggregation for `round`;
    /// returns the handle and the instructions of exchange 0, or why the
    /// strategy cannot begin.
    pub fn spawn(
        strategy: Arc<dyn Strategy>,
        round: RoundContext,
    ) -> Result<(Self, Instructions), String> {
        let (tx, rx) = mpsc::channel();
        let (began_tx, began_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("fusion-aggregate".into())
            .spawn(move || serve(strategy.as_ref(), &round, began_tx, rx))
            .map_err(|e| format!("cannot start the aggregation thread: {e}"))?;
        let instructions = began_rx
            .recv()
            .map_err(|_| "the aggregation thread stopped".to_owned())??;
        Ok((Self { commands: tx }, instructions))
    }

    /// Folds in one verified update of `exchange`. Errors when the update
    /// does not fit (the aggregation is then unchanged); `None` when that
    /// exchange is over or the round has been finished or abandoned.
    pub async fn add(
        &self,
        client: String,
        exchange: u32,
        examples: u64,
        update: Update,
    ) -> Option<Result<ModelReport, String>> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Add {
                client,
                exchange,
                examples,
                update,
                reply,
            })
            .ok()?;
        rx.await.ok()
    }

    /// Ends the current exchange: the next one's instructions, or `None`
    /// when the strategy is ready to finish.
    pub async fn advance(&self) -> Option<Result<Option<Instructions>, String>> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Advance { reply }).ok()?;
        rx.await.ok()
    }

    /// Finishes the aggregation; later `add`s get `None`.
    pub async fn finish(&self) -> Option<Result<Aggregated, String>> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Finish { reply }).ok()?;
        rx.await.ok()
    }
}

fn serve(
    strategy: &dyn Strategy,
    round: &RoundContext,
    began: mpsc::Sender<Result<Instructions, String>>,
    rx: mpsc::Receiver<Command>,
) {
    let started = Instant::now();
    let mut aggregation = match strategy.begin(round) {
        Ok(a) => a,
        Err(e) => {
            let _ = began.send(Err(e.to_string()));
            return;
        }
    };
    let mut seconds = started.elapsed().as_secs_f64();
    if began.send(Ok(aggregation.instructions())).is_err() {
        return;
    }
    // The open exchange; `None` once the last one has ended.
    let mut exchange = Some(0u32);
    let mut clients = Vec::new();
    for command in rx {
        let t = Instant::now();
        match command {
            Command::Add {
                client,
                exchange: of,
                examples,
                update,
                reply,
            } => {
                if exchange != Some(of) {
                    // Dropping `reply` answers `None`: that exchange is over.
                    continue;
                }
                let result = aggregation.add(update).map_err(|e| e.to_string());
                if result.is_ok() && of == 0 {
                    clients.push((client, examples));
                }
                seconds += t.elapsed().as_secs_f64();
                let _ = reply.send(result);
            }
            Command::Advance { reply } => {
                let result = aggregation.advance().map_err(|e| e.to_string());
                exchange = match &result {
                    Ok(Some(next)) => Some(next.exchange),
                    Ok(None) => None,
                    Err(_) => exchange,
                };
                seconds += t.elapsed().as_secs_f64();
                let _ = reply.send(result);
            }
            Command::Finish { reply } => {
                let result = aggregation.finish().map_err(|e| e.to_string());
                seconds += t.elapsed().as_secs_f64();
                let _ = reply.send(result.map(|outcome| Aggregated {
                    outcome,
                    clients,
                    seconds,
                }));
                return;
            }
        }
    }
}
