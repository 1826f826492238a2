//! The LLM agents against a scripted OpenAI/Anthropic-compatible server on 127.0.0.1.

#[path = "../common/scripted_server.rs"]
mod scripted_server;

mod protocol;
mod replies;
mod secrets;

use std::time::Duration;

use arborist::agent::parse::proposal_schema;
use arborist::agent::{
    Agent, AgentContext, ApiKey, Backend, LlmAgent, LlmClient, LlmConfig, ProposalError,
    RetryPolicy, Templates, REPAIR_SEPARATOR,
};
use scripted_server::{Scripted, ScriptedServer};

const KEY: &str = "sk-test-SECRET-0123456789";

const UP0: &str = "model.layers.0.mlp.up_proj";

fn config(backend: Backend, url: &str) -> LlmConfig {
    let mut c = LlmConfig::new(backend, "test-model");
    c.base_url = Some(url.to_string());
    c.api_key = Some(ApiKey::new(KEY));
    c.timeout = Duration::from_secs(20);
    c.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(5),
    };
    c
}

fn agent_for(backend: Backend, server: &ScriptedServer) -> LlmAgent {
    let client = LlmClient::new(config(backend, &server.url())).unwrap();
    LlmAgent::new(client, Templates::builtin()).unwrap()
}

fn agent(server: &ScriptedServer) -> LlmAgent {
    agent_for(Backend::OpenAi, server)
}

fn good(sparsity: f64) -> String {
    format!(
        r#"{{"layers": [{{"name": "{UP0}", "sparsity": {sparsity}}}], "reasoning": "lowest z"}}"#
    )
}

fn anthropic_json(content: serde_json::Value, stop_reason: &str) -> Scripted {
    Scripted::json(
        200,
        serde_json::json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": content, "stop_reason": stop_reason,
            "usage": {"input_tokens": 1, "output_tokens": 1}
        }),
    )
}
