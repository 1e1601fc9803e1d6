//! The stream of an ExecuteCommand session: a WebSocket at `contract::EXEC_PATH/<session id>`
//! (the frames are described there). The first frame claims the session with its token; the
//! handler then sends the agent an ExecStart on its live session and relays: the user's stdin
//! and resizes become ExecInputs, the agent's ExecOutputs (routed back by exec id through
//! `agents::replies`) become frames. When the user goes away the agent is told to kill the
//! process; when the agent's session ends the user gets an error.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use berth_proto::v1 as pb;
use tracing::Instrument;

use crate::app::{ControlPlane, ExecEnd, ExecSession};
use crate::contract::{ExecClientMessage, ExecOpen, ExecServerMessage, EXEC_STDERR, EXEC_STDOUT};

/// [`EXEC_PATH`](crate::contract::EXEC_PATH) and the session id (a test keeps the two together).
pub const PATH: &str = "/berth/v1/exec/{session}";

/// How long the client may take to send its first frame.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest frame a client may send (stdin is sent as it is typed or read).
const MAX_FRAME: usize = 1024 * 1024;

pub async fn stream(
    State(cp): State<Arc<ControlPlane>>,
    Path(session_id): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.max_message_size(MAX_FRAME)
        .on_upgrade(move |socket| relay(cp, session_id, socket))
}

async fn send_message(socket: &mut WebSocket, m: ExecServerMessage) -> bool {
    let text = serde_json::to_string(&m).unwrap_or_default();
    socket.send(Message::Text(text.into())).await.is_ok()
}

async fn fail(mut socket: WebSocket, error: String) {
    tracing::info!(error = %error, "exec stream refused");
    let _ = send_message(
        &mut socket,
        ExecServerMessage {
            error: Some(error),
            ..Default::default()
        },
    )
    .await;
    let _ = socket.send(Message::Close(None)).await;
}

/// The first frame: an [`ExecOpen`] that claims the session.
async fn claim(
    cp: &ControlPlane,
    session_id: &str,
    socket: &mut WebSocket,
) -> Result<(ExecSession, ExecOpen), String> {
    let open = match tokio::time::timeout(OPEN_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<ExecOpen>(&t)
            .map_err(|e| format!("the first frame is not an exec open message: {e}"))?,
        Ok(_) => return Err("the first frame must be a text frame with the tokenValue".into()),
        Err(_) => return Err(format!("no first frame within {OPEN_TIMEOUT:?}")),
    };
    let session = cp.execs.claim(session_id, &open.token_value).ok_or_else(|| {
        format!("exec session {session_id} does not exist, was already used, or expired; run ExecuteCommand again")
    })?;
    Ok((session, open))
}

/// Ends the agent's side of an exec when the stream ends.
struct Guard {
    cp: Arc<ControlPlane>,
    exec_id: String,
    instance_id: String,
    finished: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.cp.agents.execs.close(&self.exec_id);
        if !self.finished {
            tracing::info!(exec = %self.exec_id, "the exec's user went away: cancelling");
            self.cp.agents.sessions.send(
                &self.instance_id,
                input(pb::ExecInput {
                    exec_id: self.exec_id.clone(),
                    cancel: true,
                    ..Default::default()
                }),
            );
        }
    }
}

fn input(i: pb::ExecInput) -> pb::ControlMessage {
    pb::ControlMessage {
        msg: Some(pb::control_message::Msg::ExecInput(i)),
    }
}

/// What a client frame asks of the agent, if anything.
fn client_input(exec_id: &str, frame: Message) -> Result<Option<pb::ExecInput>, String> {
    let base = pb::ExecInput {
        exec_id: exec_id.to_string(),
        ..Default::default()
    };
    Ok(match frame {
        Message::Binary(b) if b.is_empty() => None,
        Message::Binary(b) => Some(pb::ExecInput {
            stdin: b.to_vec(),
            ..base
        }),
        Message::Text(t) => {
            let m: ExecClientMessage = serde_json::from_str(&t)
                .map_err(|e| format!("a text frame that is not a resize or stdinEof: {e}"))?;
            let (rows, cols) = m
                .resize
                .map_or((0, 0), |s| (u32::from(s.rows), u32::from(s.cols)));
            Some(pb::ExecInput {
                rows,
                cols,
                stdin_eof: m.stdin_eof,
                ..base
            })
        }
        Message::Ping(_) | Message::Pong(_) | Message::Close(_) => None,
    })
}

/// An agent's output as the frames the client gets, and whether it was the last.
fn output_frames(o: pb::ExecOutput) -> (Vec<Message>, bool) {
    let text =
        |m: ExecServerMessage| Message::Text(serde_json::to_string(&m).unwrap_or_default().into());
    let data = |channel: u8, bytes: Vec<u8>| {
        let mut frame = Vec::with_capacity(bytes.len() + 1);
        frame.push(channel);
        frame.extend(bytes);
        Message::Binary(frame.into())
    };
    let mut frames = Vec::new();
    if o.started {
        frames.push(text(ExecServerMessage {
            started: true,
            ..Default::default()
        }));
    }
    if !o.stdout.is_empty() {
        frames.push(data(EXEC_STDOUT, o.stdout));
    }
    if !o.stderr.is_empty() {
        frames.push(data(EXEC_STDERR, o.stderr));
    }
    let last = o.exit_code.is_some() || !o.error.is_empty();
    if let Some(code) = o.exit_code {
        frames.push(text(ExecServerMessage {
            exit_code: Some(code),
            ..Default::default()
        }));
    } else if !o.error.is_empty() {
        frames.push(text(ExecServerMessage {
            error: Some(o.error),
            ..Default::default()
        }));
    }
    (frames, last)
}

async fn relay(cp: Arc<ControlPlane>, session_id: String, mut socket: WebSocket) {
    let (session, open) = match claim(&cp, &session_id, &mut socket).await {
        Ok(x) => x,
        Err(e) => return fail(socket, e).await,
    };
    let span = tracing::info_span!("exec", session = %session.session_id, task.arn = %session.task_arn, container = %session.container);
    run(cp, session, open, socket).instrument(span).await
}

async fn run(cp: Arc<ControlPlane>, session: ExecSession, open: ExecOpen, mut socket: WebSocket) {
    let Some(agent_session) = cp.agents.sessions.session_id(&session.instance_id) else {
        return fail(
            socket,
            format!(
                "the agent of container instance {} is not connected",
                session.instance_id
            ),
        )
        .await;
    };
    let exec_id = uuid::Uuid::new_v4().simple().to_string();
    // Route first, then ask: a fast answer must find its way back.
    let mut outputs = cp
        .agents
        .execs
        .open(&exec_id, &session.instance_id, agent_session);
    let mut guard = Guard {
        cp: Arc::clone(&cp),
        exec_id: exec_id.clone(),
        instance_id: session.instance_id.clone(),
        finished: false,
    };
    let start = pb::ControlMessage {
        msg: Some(pb::control_message::Msg::ExecStart(pb::ExecStart {
            exec_id: exec_id.clone(),
            task_arn: session.task_arn.clone(),
            container_name: session.container.clone(),
            command: session.command.clone(),
            tty: open.tty,
            rows: u32::from(open.rows),
            cols: u32::from(open.cols),
        })),
    };
    if cp.agents.sessions.send(&session.instance_id, start) != Some(agent_session) {
        guard.finished = true;
        return fail(
            socket,
            "the agent disconnected before the exec started".into(),
        )
        .await;
    }
    tracing::info!(command = ?session.command, tty = open.tty, "exec started");
    let (end, refusal) = loop {
        tokio::select! {
            out = outputs.recv() => {
                let Some(out) = out else {
                    guard.finished = true;
                    let e = "the agent's session ended".to_string();
                    break (ExecEnd::Failed(e.clone()), Some(e));
                };
                let end = match (out.exit_code, out.error.is_empty()) {
                    (Some(code), _) => Some(ExecEnd::Exited(code)),
                    (None, false) => Some(ExecEnd::Failed(out.error.clone())),
                    (None, true) => None,
                };
                let (frames, _) = output_frames(out);
                for f in frames {
                    if socket.send(f).await.is_err() {
                        break;
                    }
                }
                if let Some(end) = end {
                    guard.finished = true;
                    break (end, None);
                }
            }
            frame = socket.recv() => match frame {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break (ExecEnd::Abandoned, None),
                Some(Ok(frame)) => match client_input(&guard.exec_id, frame) {
                    Ok(Some(i)) => {
                        cp.agents.sessions.send(&session.instance_id, input(i));
                    }
                    Ok(None) => {}
                    Err(e) => break (ExecEnd::Abandoned, Some(e)),
                },
            },
        }
    };
    tracing::info!(end = ?end, "exec stream ended");
    let record = {
        let cp = Arc::clone(&cp);
        tokio::task::spawn_blocking(move || cp.execs.ended(&session, &end))
    };
    let _ = record.await;
    drop(guard);
    match refusal {
        Some(e) => fail(socket, e).await,
        None => {
            let _ = socket.send(Message::Close(None)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::EXEC_PATH;

    #[test]
    fn the_route_is_the_contracts_path() {
        assert_eq!(PATH, format!("{EXEC_PATH}/{{session}}"));
    }

    #[test]
    fn client_frames_become_inputs() {
        let i = client_input("e", Message::Binary(b"ls\n".to_vec().into()))
            .unwrap()
            .unwrap();
        assert_eq!(i.stdin, b"ls\n");
        let i = client_input(
            "e",
            Message::Text(r#"{"resize":{"rows":40,"cols":100}}"#.into()),
        )
        .unwrap()
        .unwrap();
        assert_eq!((i.rows, i.cols, i.stdin_eof), (40, 100, false));
        let i = client_input("e", Message::Text(r#"{"stdinEof":true}"#.into()))
            .unwrap()
            .unwrap();
        assert!(i.stdin_eof);
        assert!(client_input("e", Message::Text("nonsense".into())).is_err());
        assert!(client_input("e", Message::Binary(Vec::new().into()))
            .unwrap()
            .is_none());
    }

    #[test]
    fn outputs_become_frames_and_an_exit_is_last() {
        let (frames, last) = output_frames(pb::ExecOutput {
            exec_id: "e".into(),
            stdout: b"hi".to_vec(),
            stderr: b"oops".to_vec(),
            ..Default::default()
        });
        assert!(!last);
        assert_eq!(
            frames,
            vec![
                Message::Binary(vec![EXEC_STDOUT, b'h', b'i'].into()),
                Message::Binary(vec![EXEC_STDERR, b'o', b'o', b'p', b's'].into()),
            ]
        );
        let (frames, last) = output_frames(pb::ExecOutput {
            exit_code: Some(3),
            ..Default::default()
        });
        assert!(last);
        assert_eq!(frames, vec![Message::Text(r#"{"exitCode":3}"#.into())]);
        let (_, last) = output_frames(pb::ExecOutput {
            error: "no such container".into(),
            ..Default::default()
        });
        assert!(last);
    }
}
