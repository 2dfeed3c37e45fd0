//! `SqsApi` over aws-sdk-sqs.

use async_trait::async_trait;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};

use super::{Error, Result, SqsApi};

/// The SQS client.
#[derive(Clone, Debug)]
pub struct SdkSqs(pub aws_sdk_sqs::Client);

#[async_trait]
impl SqsApi for SdkSqs {
    async fn receive_messages(
        &self,
        queue_url: String,
        max_messages: i32,
        wait_seconds: i32,
    ) -> Result<Vec<Message>> {
        let out = self
            .0
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(max_messages.clamp(1, 10))
            .wait_time_seconds(wait_seconds.clamp(0, 20))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| Error::from_sdk("ReceiveMessage", e))?;
        Ok(out.messages.unwrap_or_default())
    }

    async fn delete_message(&self, queue_url: String, receipt_handle: String) -> Result<()> {
        self.0
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(|e| Error::from_sdk("DeleteMessage", e))?;
        Ok(())
    }

    async fn get_queue_url(&self, queue_name: String) -> Result<String> {
        let out = self
            .0
            .get_queue_url()
            .queue_name(queue_name.clone())
            .send()
            .await
            .map_err(|e| Error::from_sdk("GetQueueUrl", e))?;
        out.queue_url.ok_or_else(|| Error::Transport {
            operation: "GetQueueUrl",
            message: format!("no url returned for queue {queue_name}"),
        })
    }
}
