//! The SQS queue (`QUEUE_BACKEND=sqs`): a FIFO queue whose message group is the thread key
//! (SQS hands out one message of a group at a time, oldest first) and whose deduplication
//! id is the execution id. Redrive to a dead-letter queue is the queue's own attribute
//! (`RedrivePolicy`, set in `infra/template.yaml`).

use crate::{Delivery, Queue, QueueError, QueueMessage};
use async_trait::async_trait;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use aws_sdk_sqs::Client;
use std::time::Duration;

/// SQS allows at most this many messages per receive.
const MAX_BATCH: usize = 10;
/// SQS long polling waits at most this long.
const MAX_WAIT_SECS: u64 = 20;
/// Error codes that mean "this receipt is no longer yours": harmless for extend/delete.
const STALE_RECEIPT_CODES: [&str; 3] = [
    "ReceiptHandleIsInvalid",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
];

/// A queue on one SQS FIFO queue URL.
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

fn service_error<E>(operation: &str, err: aws_sdk_sqs::error::SdkError<E>) -> QueueError
where
    E: std::error::Error + Send + Sync + 'static,
{
    QueueError::Service(format!(
        "SQS {operation} failed: {}",
        DisplayErrorContext(err)
    ))
}

fn is_stale_receipt<E: ProvideErrorMetadata>(err: &aws_sdk_sqs::error::SdkError<E>) -> bool {
    err.as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|code| STALE_RECEIPT_CODES.contains(&code))
}

fn whole_seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

impl SqsQueue {
    /// Connects with the standard AWS environment chain (region, credentials), optionally
    /// through `endpoint_url` (moto in tests, or a VPC endpoint).
    pub async fn connect(queue_url: &str, endpoint_url: Option<&str>) -> Result<Self, QueueError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(endpoint) = endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        Ok(Self::from_sdk_config(&loader.load().await, queue_url))
    }

    /// A queue from an already-built SDK configuration (tests pass static credentials).
    pub fn from_sdk_config(config: &aws_config::SdkConfig, queue_url: &str) -> Self {
        Self {
            client: Client::new(config),
            queue_url: queue_url.to_owned(),
        }
    }

    /// The underlying client (queue set-up in tests and benchmarks).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, message: &QueueMessage) -> Result<(), QueueError> {
        let body =
            serde_json::to_string(message).map_err(|err| QueueError::Malformed(err.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_group_id(&message.thread_key)
            .message_deduplication_id(&message.execution_id)
            .send()
            .await
            .map_err(|err| service_error("SendMessage", err))?;
        Ok(())
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(wait.as_secs().min(MAX_WAIT_SECS) as i32)
            .visibility_timeout(whole_seconds(visibility).max(1))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|err| service_error("ReceiveMessage", err))?;
        let mut deliveries = Vec::new();
        for raw in output.messages() {
            let Some(receipt) = raw.receipt_handle() else {
                continue;
            };
            let parsed = raw
                .body()
                .and_then(|body| serde_json::from_str::<QueueMessage>(body).ok());
            let Some(message) = parsed else {
                // A body that is not ours can never become runnable: drop it rather than
                // let it cycle to the dead-letter queue while blocking its group.
                tracing::warn!(
                    message_id = raw.message_id(),
                    "deleting malformed SQS message"
                );
                self.delete(receipt).await?;
                continue;
            };
            let receive_count = raw
                .attributes()
                .and_then(|attrs| attrs.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|count| count.parse().ok())
                .unwrap_or(1);
            deliveries.push(Delivery {
                message,
                receipt: receipt.to_owned(),
                receive_count,
            });
        }
        Ok(deliveries)
    }

    async fn extend(&self, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        match self
            .client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(whole_seconds(visibility))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if is_stale_receipt(&err) => Ok(()),
            Err(err) => Err(service_error("ChangeMessageVisibility", err)),
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        match self
            .client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if is_stale_receipt(&err) => Ok(()),
            Err(err) => Err(service_error("DeleteMessage", err)),
        }
    }

    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        self.extend(receipt, delay).await
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|err| service_error("GetQueueAttributes", err))?;
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "sqs"
    }
}
