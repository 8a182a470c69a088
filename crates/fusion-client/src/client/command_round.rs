//! A round's work done by the user's training command
//! (`fusion-client --trainer-cmd`): fetch the model, run the command,
//! check what it wrote, upload. A failed training uploads nothing.

use fusion_external::{TrainOutput, TrainRequest};
use fusion_net::pb;

use super::{Reaction, Sent, Session};
use crate::error::ClientError;
use crate::local::LocalTraining;

impl Session {
    /// One exchange of a round, done by the user's trainer; false when the
    /// client must join again.
    pub(super) async fn command_exchange(
        &mut self,
        order: &pb::HeartbeatReply,
    ) -> Result<bool, ClientError> {
        let (round, exchange, attempt) = (order.round, order.exchange, order.attempt);
        if self.failed_at == Some((round, attempt, exchange)) {
            // Failed in this attempt already: wait for a retry or the next round.
            tokio::time::sleep(self.poll).await;
            return Ok(true);
        }
        let output = match self.pending_output.take() {
            Some((r, e, output)) if r == round && e == exchange => output,
            _ => match self.run_trainer(order).await? {
                Trained::Output(output) => output,
                Trained::Skip => return Ok(true),
                Trained::Rejoin => return Ok(false),
            },
        };
        if self.finished {
            return Ok(true);
        }
        if output.examples > self.examples {
            // Sent as reported: the server weighs the update by the Join
            // count and scales the statistics (sums over the reported
            // examples) to it; capping the count here would not.
            tracing::warn!(
                client = %self.config.client_id,
                round,
                reported = output.examples,
                declared = self.examples,
                "the trainer reports more examples than --examples declares; the update weighs --examples"
            );
        }
        if exchange == 0
            && let Some(update) = &output.update
        {
            // Kept before uploading, as with the built-in trainer: later
            // exchanges of the round hand it to the trainer as FUSION_OWN.
            self.trained = Some((round, update.clone()));
        }
        let sent = self
            .upload(
                order,
                output.update.as_ref(),
                &output.statistics,
                output.examples,
            )
            .await?;
        match sent {
            Sent::Merged => {
                if let Some(update) = output.update {
                    self.summary.last_trained = Some(update);
                }
                Ok(true)
            }
            Sent::Refused => Ok(true),
            Sent::Retry => {
                self.pending_output = Some((round, exchange, output));
                Ok(true)
            }
            Sent::Rejoin => {
                self.pending_output = Some((round, exchange, output));
                Ok(false)
            }
        }
    }

    /// Fetches what the exchange starts from and runs the trainer on it,
    /// off the async threads, keeping the registration alive meanwhile.
    async fn run_trainer(&mut self, order: &pb::HeartbeatReply) -> Result<Trained, ClientError> {
        let LocalTraining::Command(command) = &self.local else {
            return Err(ClientError::Model("no trainer command configured".into()));
        };
        let command = command.clone();
        let (round, exchange) = (order.round, order.exchange);
        let own = if exchange == 0 {
            None
        } else {
            match &self.trained {
                Some((r, model)) if *r == round => Some(model.clone()),
                _ => {
                    tracing::warn!(
                        client = %self.config.client_id,
                        round,
                        exchange,
                        "asked for statistics of a round this client did not train in; skipping"
                    );
                    tokio::time::sleep(self.poll).await;
                    return Ok(Trained::Skip);
                }
            }
        };
        let global = if exchange == 0 && order.from_own_init {
            None
        } else {
            match self.fetch(round, exchange).await {
                Ok(model) => Some(model),
                Err(status) => {
                    return match self.react(status).await? {
                        Reaction::Retry => Ok(Trained::Skip),
                        Reaction::Rejoin => Ok(Trained::Rejoin),
                        Reaction::Fatal(e) => Err(e),
                    };
                }
            }
        };
        let statistics = order.statistics.clone();
        let (from_own_init, proximal_mu, wants_weights) = (
            order.from_own_init,
            f64::from(order.proximal_mu),
            order.send_weights,
        );
        let trainer = command.trainer.clone();
        self.health.write(&format!("training round {round}"));
        tracing::info!(
            client = %self.config.client_id,
            round,
            exchange,
            command = %trainer.command().command,
            "running the trainer"
        );
        let work = tokio::task::spawn_blocking(move || {
            trainer.run(&TrainRequest {
                round,
                exchange,
                global: global.as_ref(),
                own: own.as_ref(),
                from_own_init,
                proximal_mu,
                wants_weights,
                statistics: &statistics,
            })
        });
        let outcome = match self
            .while_busy(work, &format!("training round {round}"))
            .await
        {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(e) => Err(format!("the trainer task failed: {e}")),
        };
        match outcome {
            Ok(output) => {
                self.failures_in_a_row = 0;
                tracing::info!(
                    client = %self.config.client_id,
                    round,
                    exchange,
                    examples = output.examples,
                    metrics = ?output.metrics,
                    "trainer finished; update checked"
                );
                Ok(Trained::Output(output))
            }
            Err(why) => {
                self.training_failed(order, command.max_failures, why)?;
                Ok(Trained::Skip)
            }
        }
    }

    /// Records a failed training: nothing is uploaded for this attempt,
    /// and the client stops after `max_failures` in a row.
    fn training_failed(
        &mut self,
        order: &pb::HeartbeatReply,
        max_failures: u32,
        why: String,
    ) -> Result<(), ClientError> {
        self.summary.failed += 1;
        self.failures_in_a_row += 1;
        self.failed_at = Some((order.round, order.attempt, order.exchange));
        tracing::error!(
            client = %self.config.client_id,
            round = order.round,
            attempt = order.attempt,
            exchange = order.exchange,
            failures_in_a_row = self.failures_in_a_row,
            "training failed, nothing uploaded: {why}"
        );
        if self.failures_in_a_row >= max_failures {
            return Err(ClientError::Trainer {
                failures: self.failures_in_a_row,
                last: why,
            });
        }
        Ok(())
    }
}

/// What running the trainer gave.
enum Trained {
    /// A checked output to upload.
    Output(TrainOutput),
    /// Nothing this time (failed, or a call failed and will be retried).
    Skip,
    /// The server lost track of the client: join again.
    Rejoin,
}
