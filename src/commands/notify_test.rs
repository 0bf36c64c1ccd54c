//! `notify-test -c FILE CHANNEL`: builds one channel from the config and sends it a sample
//! notification, once, without the outbox: exit 0 when the receiver accepted it, 1 when
//! it did not (with the error), 2 when the config has no such channel.

use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;

use crate::cli::NotifyTestArgs;
use crate::config::Config;
use crate::dispatch::channels::{self, Channel, SendError};

/// What one test delivery came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The receiver accepted the notification with this id.
    Sent { id: String },
    /// The channel cannot be built, or the receiver refused or could not be reached.
    Failed { message: String },
    /// No channel of that name; the message lists the configured ones.
    UnknownChannel { message: String },
}

impl Outcome {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Outcome::Sent { .. } => ExitCode::SUCCESS,
            Outcome::Failed { .. } => ExitCode::from(1),
            Outcome::UnknownChannel { .. } => ExitCode::from(2),
        }
    }
}

pub fn run(args: crate::cli::NotifyTestArgs) -> anyhow::Result<ExitCode> {
    let NotifyTestArgs { config, channel } = args;
    let config = Config::load(&config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(notify(&config, &channel));
    match &outcome {
        Outcome::Sent { id } => {
            println!("ok: channels.{channel} accepted the test notification {id}")
        }
        Outcome::Failed { message } | Outcome::UnknownChannel { message } => {
            eprintln!("error: {message}");
        }
    }
    Ok(outcome.exit_code())
}

/// Sends [`channels::sample_notification`] through the channel `name` of `config`.
pub async fn notify(config: &Config, name: &str) -> Outcome {
    let Some(channel_config) = config.channels.get(name) else {
        return Outcome::UnknownChannel {
            message: format!(
                "{}: no channel `{name}` (channels: {})",
                config.path.display(),
                config.channel_names()
            ),
        };
    };
    let kind = channel_config.kind();
    let failed = |message: String| Outcome::Failed {
        message: format!("channels.{name} ({kind}): {message}"),
    };
    let http = match channels::http_client() {
        Ok(http) => http,
        Err(e) => return failed(e),
    };
    let channel = match Channel::build(name, channel_config, &http) {
        Ok(channel) => channel,
        // The error names the channel already.
        Err(e) => {
            return Outcome::Failed {
                message: e.to_string(),
            };
        }
    };
    let now = Utc::now();
    let notification = channels::sample_notification(name, now);
    match channel.send(&notification, now).await {
        Ok(()) => Outcome::Sent {
            id: notification.id,
        },
        Err(SendError::Retryable { message, .. }) => {
            failed(format!("{message} (the daemon would retry this)"))
        }
        Err(SendError::Permanent { message }) => failed(message),
    }
}
